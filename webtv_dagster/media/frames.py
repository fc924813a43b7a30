"""Raw frames in and out of FFmpeg as numpy arrays (the offline backends' pictures); apart
from media/ffmpeg.py so that what only runs FFmpeg (the playout) does not load numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from webtv_dagster.media.ffmpeg import run_ffmpeg


def encode_rgb_frames(frames: np.ndarray, fps: int, output: Path, purpose: str) -> None:
    """Encodes uint8 RGB frames (count, height, width, 3) as near-lossless H.264."""
    count, height, width, _ = frames.shape
    run_ffmpeg(
        [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            str(fps),
            "-i",
            "pipe:0",
            "-frames:v",
            str(count),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "14",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            str(output),
        ],
        purpose,
        stdin=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(),
    )


YuvFrame = tuple[np.ndarray, np.ndarray, np.ndarray]  # Y (h, w), U and V (h/2, w/2)


def _decode_raw(path: Path, width: int, height: int, pix_fmt: str) -> bytes:
    """Every frame of a video as raw `pix_fmt` pictures, Lanczos-scaled to width x height."""
    return run_ffmpeg(
        [
            "-i",
            str(path),
            "-vf",
            f"scale={width}:{height}:flags=lanczos",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt,
            "pipe:1",
        ],
        f"decoding {path.name}",
    )


def decode_yuv420_frames(path: Path, width: int, height: int) -> list[YuvFrame]:
    """Decodes every frame of a video as yuv420p planes, Lanczos-scaled to width x height (even):
    the planes the encoder gets back, with no colour conversion on the way."""
    raw = _decode_raw(path, width, height, "yuv420p")
    luma, chroma = width * height, (width // 2) * (height // 2)
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, luma + 2 * chroma)
    half = (height // 2, width // 2)
    return [
        (
            frame[:luma].reshape(height, width),
            frame[luma : luma + chroma].reshape(half),
            frame[luma + chroma :].reshape(half),
        )
        for frame in frames
    ]


def decode_rgb_frames(path: Path, width: int, height: int) -> np.ndarray:
    """Decodes every frame of a video as uint8 RGB (count, height, width, 3), Lanczos-scaled to
    width x height: what a model takes as pictures."""
    raw = _decode_raw(path, width, height, "rgb24")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def last_frame_png(video: Path, output: Path) -> Path:
    """The video's last frame as a PNG: each decoded frame of its last second overwrites the
    file, so the last one stays."""
    run_ffmpeg(
        ["-sseof", "-1", "-i", str(video), "-update", "1", "-an", str(output)],
        f"taking the last frame of {video.name}",
    )
    return output
