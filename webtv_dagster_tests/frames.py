"""Decoding a video's frames to arrays, for tests and benchmarks that look at the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from webtv_dagster.media.ffmpeg import MediaToolError, probe, run_ffmpeg


def decode_luma_frames(path: Path) -> np.ndarray:
    """Every frame's luma plane at the video's own size, as float32 (count, height, width): what
    picture-quality measures compare."""
    video = probe(path).video
    if video is None:
        raise MediaToolError(f"{path.name} has no video stream")
    raw = run_ffmpeg(
        ["-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"], f"decoding {path.name}"
    )
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, video.height, video.width)
    return frames.astype(np.float32)
