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


def black_spans(path: Path, duration: float) -> Spans:
    log = _filter_log(path, ["-vf", "blackdetect=d=0.1:pix_th=0.10", "-an"])
    return _spans(log, "black", duration)


def frozen_spans(path: Path, duration: float) -> Spans:
    log = _filter_log(path, ["-vf", "freezedetect=n=0.001:d=0.5", "-an"])
    return _spans(log, "freeze", duration)


def silent_spans(path: Path, duration: float) -> Spans:
    log = _filter_log(path, ["-af", "silencedetect=n=-50dB:d=0.3", "-vn"])
    return _spans(log, "silence", duration)


class Loudness(BaseModel):
    """EBU R128 figures as loudnorm measures them (threshold and offset feed its second pass)."""

    integrated_lufs: float
    true_peak_db: float
    loudness_range: float
    threshold: float
    target_offset: float


def measure_loudness(path: Path) -> Loudness:
    log = _filter_log(path, ["-vn", "-af", "loudnorm=print_format=json"])
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
