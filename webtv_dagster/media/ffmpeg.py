"""Running FFmpeg and ffprobe, with errors that say what was being done and why it failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import ffmpeg  # ffmpeg-python: its probe runs ffprobe; every other command is built here.
from pydantic import BaseModel, Field


class MediaToolError(RuntimeError):
    """FFmpeg or ffprobe failed; the message carries the tail of its log."""


def _stderr_tail(stderr: bytes, lines: int = 8) -> str:
    text = stderr.decode("utf-8", errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


def run_ffmpeg(args: Sequence[str], purpose: str, *, stdin: bytes | None = None) -> bytes:
    """Runs ffmpeg with `args` (without the program name); returns its stdout."""
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    if stdin is not None:
        command.remove("-nostdin")
    try:
        completed = subprocess.run(command, input=stdin, capture_output=True, check=False)
    except FileNotFoundError as error:
        raise MediaToolError(
            "ffmpeg is not installed or not on PATH (Debian/Ubuntu: apt-get install ffmpeg)"
        ) from error
    if completed.returncode != 0:
        raise MediaToolError(
            f"ffmpeg failed while {purpose} (exit {completed.returncode}):\n"
            f"{_stderr_tail(completed.stderr)}"
        )
    return completed.stdout


class VideoStreamInfo(BaseModel):
    codec: str
    width: int
    height: int
    fps: float
    pix_fmt: str
    frames: int | None
    duration: float
    # Keyframe times (s), read from the container by `probe(..., keyframes=True)`; left out of
    # dumps.
    keyframe_times: list[float] | None = Field(None, exclude=True)


class AudioStreamInfo(BaseModel):
    codec: str
    sample_rate: int
    channels: int
    duration: float
    frames: int | None = None  # packets in the container: an AAC frame (1024 samples) each


class MediaInfo(BaseModel):
    """The parts of ffprobe's report an operator uses to judge a file."""

    format: str
    duration: float
    size_bytes: int
    bit_rate: int | None
    video: VideoStreamInfo | None = None
    audio: AudioStreamInfo | None = None


def _rate(text: str) -> float:
    numerator, _, denominator = text.partition("/")
    return float(numerator) / float(denominator or 1) if float(denominator or 1) else 0.0


def probe(path: Path, keyframes: bool = False) -> MediaInfo:
    """ffprobe summary of a media file; a file ffprobe cannot read is a MediaToolError. With
    `keyframes`, the video's keyframe times too: the packets the container flags as keyframes,
    where a stream copy can cut (read from the packets ffprobe reads anyway to count them:
    nothing is decoded). This is the one listing of keyframes: previews, the broadcast
    profile's check and quality control all read it."""
    packets = {"show_entries": "packet=stream_index,pts_time,flags"} if keyframes else {}
    try:
        report = ffmpeg.probe(str(path), count_packets=None, **packets)
    except ffmpeg.Error as error:
        raise MediaToolError(
            f"ffprobe cannot read {path.name}: {_stderr_tail(error.stderr or b'')}"
        ) from error
    except FileNotFoundError as error:
        raise MediaToolError("ffprobe is not installed or not on PATH") from error
    fmt = report["format"]
    info = MediaInfo(
        format=fmt.get("format_name", "?"),
        duration=float(fmt.get("duration", 0.0)),
        size_bytes=int(fmt.get("size", path.stat().st_size)),
        bit_rate=int(fmt["bit_rate"]) if fmt.get("bit_rate") else None,
    )
    for stream in report.get("streams", []):
        duration = float(stream.get("duration", info.duration))
        if stream.get("codec_type") == "video" and info.video is None:
            info.video = VideoStreamInfo(
                codec=stream.get("codec_name", "?"),
                width=int(stream["width"]),
                height=int(stream["height"]),
                fps=round(_rate(stream.get("avg_frame_rate", "0/1")), 3),
                pix_fmt=stream.get("pix_fmt", "?"),
                frames=int(stream["nb_read_packets"]) if "nb_read_packets" in stream else None,
                duration=duration,
                keyframe_times=_keyframe_times(report, stream["index"]) if keyframes else None,
            )
        elif stream.get("codec_type") == "audio" and info.audio is None:
            info.audio = AudioStreamInfo(
                codec=stream.get("codec_name", "?"),
                sample_rate=int(stream.get("sample_rate", 0)),
                channels=int(stream.get("channels", 0)),
                duration=duration,
                frames=int(stream["nb_read_packets"]) if "nb_read_packets" in stream else None,
            )
    return info


def _keyframe_times(report: dict, stream_index: int) -> list[float]:
    return sorted(
        float(packet["pts_time"])
        for packet in report.get("packets", [])
        if packet.get("stream_index") == stream_index
        and "K" in packet.get("flags", "")
        and "pts_time" in packet
    )
