"""Small previews an operator sees in the Dagster UI without downloading the media."""

from __future__ import annotations

import base64
from pathlib import Path

import ffmpeg

from webtv_dagster.media.ffmpeg import MediaToolError, probe, run_ffmpeg

CONTACT_SHEET_FRAMES = 4
THUMB_WIDTH = 192


def keyframe_times(video: Path) -> list[float]:
    """Times of the video's keyframes, read from the container (no decoding)."""
    try:
        report = ffmpeg.probe(
            str(video), select_streams="v:0", show_entries="packet=pts_time,flags"
        )
    except ffmpeg.Error as error:
        raise MediaToolError(f"ffprobe cannot read {video.name}") from error
    return [
        float(packet["pts_time"])
        for packet in report.get("packets", [])
        if "K" in packet.get("flags", "") and "pts_time" in packet
    ]


def contact_sheet_jpeg(video: Path) -> bytes:
    """A strip of frames spread evenly over the clip, as JPEG bytes.

    When the clip has enough keyframes (broadcast clips have one every 2 s), only those are
    decoded; otherwise every frame is decoded and one taken at each step.
    """
    tiles = f"scale={THUMB_WIDTH}:-2,tile={CONTACT_SHEET_FRAMES}x1"
    keyframes = keyframe_times(video)
    if len(keyframes) >= CONTACT_SHEET_FRAMES:
        step = len(keyframes) / CONTACT_SHEET_FRAMES
        picks = "+".join(f"eq(n,{int(i * step)})" for i in range(CONTACT_SHEET_FRAMES))
        decode = ["-skip_frame", "nokey", "-i", str(video), "-vf", f"select='{picks}',{tiles}"]
    else:
        duration = max(probe(video).duration, 0.04)
        every = duration / CONTACT_SHEET_FRAMES
        decode = ["-i", str(video), "-vf", f"fps={1 / every:.6f},{tiles}"]
    return run_ffmpeg(
        [*decode, "-fps_mode", "passthrough", "-frames:v", "1", "-q:v", "5",
         "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"],
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
