"""Small previews an operator sees in the Dagster UI without downloading the media."""

from __future__ import annotations

import base64
from pathlib import Path

from webtv_dagster.media.ffmpeg import probe, run_ffmpeg

CONTACT_SHEET_FRAMES = 4
THUMB_WIDTH = 192


def contact_sheet_jpeg(video: Path) -> bytes:
    """A strip of frames spread evenly over the clip, as JPEG bytes."""
    info = probe(video)
    duration = max(info.duration, 0.04)
    step = duration / CONTACT_SHEET_FRAMES
    # fps picks one frame per step; tile lays them side by side.
    return run_ffmpeg(
        [
            "-i", str(video),
            "-vf", f"fps={1 / step:.6f},scale={THUMB_WIDTH}:-2,tile={CONTACT_SHEET_FRAMES}x1",
            "-frames:v", "1", "-q:v", "5", "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1",
        ],
        f"making a contact sheet of {video.name}",
    )  # fmt: skip


def waveform_png(audio: Path) -> bytes:
    return run_ffmpeg(
        [
            "-i", str(audio),
            "-filter_complex", "showwavespic=s=768x96:split_channels=1:colors=0x4da3ff|0xff9f43",
            "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "pipe:1",
        ],
        f"drawing the waveform of {audio.name}",
    )  # fmt: skip


def markdown_image(image: bytes, mime: str, alt: str) -> str:
    encoded = base64.b64encode(image).decode("ascii")
    return f"![{alt}](data:{mime};base64,{encoded})"
