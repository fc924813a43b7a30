"""The FFmpeg commands of a playout: the remux of a clip into MPEG-TS placed on the channel's
timeline (no re-encoding), and the publisher process that paces MPEG-TS to real time and copies
it to FLV over RTMP (playout/publisher.py feeds both)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from webtv_dagster.media.ffmpeg import MediaToolError


def remux_to_ts(clip: Path, output_ts_offset: float) -> tuple[bytes, int]:
    """`clip` remuxed to MPEG-TS whose timestamps start at `output_ts_offset`, and the video
    frames that came out (a truncated or damaged file yields fewer, or a MediaToolError).

    Each clip's AAC priming packet (negative timestamp) is dropped, and each PES packet is
    written whole and contiguously (`-muxdelay 0`), so the result can be cut at keyframes."""
    command = [
        "ffmpeg",
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-i",
        str(clip),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-c",
        "copy",
        "-bsf:v",
        "h264_mp4toannexb",
        "-bsf:a",
        r"noise=drop=lt(pts\,0)",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-avoid_negative_ts",
        "disabled",
        "-output_ts_offset",
        f"{output_ts_offset:.6f}",
        "-mpegts_flags",
        "+initial_discontinuity",
        "-progress",
        "pipe:2",
        "-f",
        "mpegts",
        "pipe:1",
    ]
    remux = subprocess.run(command, capture_output=True, check=False)
    report = remux.stderr.decode(errors="replace")
    frames = [int(line[6:]) for line in report.splitlines() if line.startswith("frame=")]
    if remux.returncode != 0 or not frames:
        errors = [line for line in report.splitlines() if "=" not in line]
        raise MediaToolError(f"cannot remux {clip.name} for air: {' '.join(errors)[-300:]}")
    return remux.stdout, frames[-1]


# scripts/build-publisher-ffmpeg's FFmpeg, built with only what a publisher uses: about 40 MB
# less resident than Debian's ffmpeg, which maps some 215 shared libraries.
SLIM_PUBLISHER_FFMPEG = "webtv-publisher-ffmpeg"


def default_publisher_ffmpeg() -> str:
    """The slim FFmpeg where it lies beside the interpreter (a virtualenv's bin, the image's
    /usr/local/bin), else the system's ffmpeg."""
    slim = Path(sys.executable).parent / SLIM_PUBLISHER_FFMPEG
    return str(slim) if slim.is_file() else "ffmpeg"


def start_rtmp_publisher(
    ffmpeg: str,
    url: str,
    output_ts_offset: float,
    progress_period: float,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """An FFmpeg process (the `ffmpeg` executable) that reads MPEG-TS on its stdin, paces it to
    real time (`-re`) and copies it to FLV at `url`, its output timestamps moved on by
    `output_ts_offset`; it reports its progress (`out_time_us=`) on stdout every
    `progress_period` seconds and its warnings on stderr."""
    return subprocess.Popen(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "warning",
            "-re",
            "-f",
            "mpegts",
            "-i",
            "pipe:0",
            "-c",
            "copy",
            "-output_ts_offset",
            f"{output_ts_offset:.6f}",
            "-progress",
            "pipe:1",
            "-stats_period",
            str(progress_period),
            "-f",
            "flv",
            url,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )


def is_rtmp_publisher(command_line: str) -> bool:
    """Whether a process's command line (its arguments joined by spaces) is one that
    start_rtmp_publisher started, whichever FFmpeg executable runs it."""
    return " -f flv rtmp://" in command_line
