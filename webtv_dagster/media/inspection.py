"""Measurements of finished media: black, frozen, silent, loudness.

These answer "does this clip look and sound like something", for tests now and for
quality checks before air.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel

from webtv_dagster.media.ffmpeg import MediaToolError


def _filter_log(path: Path, args: list[str]) -> str:
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), *args, "-f", "null", "-"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        raise MediaToolError(f"ffmpeg could not analyse {path.name}:\n{tail}")
    return completed.stderr


class Spans(BaseModel):
    """Total seconds flagged by an ffmpeg detect filter."""

    seconds: float
    spans: int


def _spans(log: str, kind: str, duration: float) -> Spans:
    starts = [float(m) for m in re.findall(rf"{kind}_start:\s*([-\d.]+)", log)]
    ends = [float(m) for m in re.findall(rf"{kind}_end:\s*([-\d.]+)", log)]
    total = 0.0
    for index, start in enumerate(starts):
        end = ends[index] if index < len(ends) else duration
        total += max(0.0, end - start)
    return Spans(seconds=round(total, 3), spans=len(starts))


BLACKDETECT = "blackdetect=d=0.1:pix_th=0.10"
FREEZEDETECT = "freezedetect=n=0.001:d=0.5"
SILENCEDETECT = "silencedetect=n=-50dB:d=0.3"
LOUDNORM_MEASURE = "loudnorm=print_format=json"


# A picture that flickers between two or three frames changes every frame, yet shows nothing:
# freezedetect also watches every 2nd and every 3rd frame, and the stillest of the three counts.
FREEZE_CYCLES = (2, 3)


def freeze_graph(source: str, output: str) -> str:
    """Filter graph from the video label `source`: `output` is the stream itself (its frames
    are the clip's), the other branches end in null sinks."""
    branches = [
        f"[{source}]split={1 + len(FREEZE_CYCLES)}[{output}_all]"
        + "".join(f"[{output}_every{cycle}]" for cycle in FREEZE_CYCLES),
        f"[{output}_all]{FREEZEDETECT}[{output}]",
    ]
    branches += [
        f"[{output}_every{cycle}]select='not(mod(n\\,{cycle}))',{FREEZEDETECT},nullsink"
        for cycle in FREEZE_CYCLES
    ]
    return ";".join(branches)


def _frozen(log: str, duration: float) -> Spans:
    """The stillest of the freezedetect instances in `log` (told apart by their addresses)."""
    by_instance: dict[str, list[str]] = {}
    for address, line in re.findall(r"\[freezedetect @ (0x[0-9a-f]+)\] (.*)", log):
        by_instance.setdefault(address, []).append(line)
    spans = [_spans("\n".join(lines), "freeze", duration) for lines in by_instance.values()]
    return max(spans, key=lambda found: found.seconds, default=Spans(seconds=0, spans=0))


def frozen_spans(path: Path, duration: float) -> Spans:
    log = _filter_log(path, ["-filter_complex", freeze_graph("0:v:0", "v"), "-map", "[v]", "-an"])
    return _frozen(log, duration)


class Loudness(BaseModel):
    """EBU R128 figures as loudnorm measures them (threshold and offset feed its second pass)."""

    integrated_lufs: float
    true_peak_db: float
    loudness_range: float
    threshold: float
    target_offset: float


def measure_loudness(path: Path) -> Loudness:
    log = _filter_log(path, ["-vn", "-af", LOUDNORM_MEASURE])
    return _loudness(log, path)


def _loudness(log: str, path: Path) -> Loudness:
    match = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", log, re.S)
    if not match:
        raise MediaToolError(f"loudnorm printed no measurement for {path.name}")
    stats = json.loads(match.group(0))
    return Loudness(
        integrated_lufs=float(stats["input_i"]),
        true_peak_db=float(stats["input_tp"]),
        loudness_range=float(stats["input_lra"]),
        threshold=float(stats["input_thresh"]),
        target_offset=float(stats["target_offset"]),
    )


class ClipMeasurements(BaseModel):
    """Everything the quality checks measure by decoding a clip, from one decode of it."""

    black: Spans
    frozen: Spans
    silent: Spans
    loudness: Loudness
    video_frames: int
    decoder_errors: list[str]


def measure_clip(path: Path, duration: float) -> ClipMeasurements:
    """Decodes the clip's first video and audio streams once, through every detector at once
    (each alone would decode the whole clip again)."""
    graph = (
        f"[0:v:0]{BLACKDETECT}[black];{freeze_graph('black', 'v')};"
        f"[0:a:0]{SILENCEDETECT},{LOUDNORM_MEASURE}[a]"
    )
    log = _filter_log(path, ["-filter_complex", graph, "-map", "[v]", "-map", "[a]"])
    frames = re.findall(r"frame=\s*(\d+)", log)
    # Decoder complaints carry the decoder's or demuxer's name in brackets, e.g. [h264 @ 0x..].
    errors = [
        line.strip()
        for line in log.splitlines()
        if re.match(r"\[(h264|aac|mov,mp4[^\]]*) @ ", line.strip())
    ]
    return ClipMeasurements(
        black=_spans(log, "black", duration),
        frozen=_frozen(log, duration),
        silent=_spans(log, "silence", duration),
        loudness=_loudness(log, path),
        video_frames=int(frames[-1]) if frames else 0,
        decoder_errors=errors,
    )
