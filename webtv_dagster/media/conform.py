"""Bringing a remote model's output to what the next stage expects."""

from __future__ import annotations

from pathlib import Path

from webtv_dagster.media.ffmpeg import probe, run_ffmpeg

# Intermediates are re-encoded downstream and removed a day later: fast, and transparent
# enough for one more generation. A keyframe every 2 s at 24 fps lets previews decode only
# keyframes.
INTERMEDIATE_X264 = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-crf",
    "16",
    "-g",
    "48",
    "-pix_fmt",
    "yuv420p",
]


def conform_video(
    source: Path,
    output: Path,
    *,
    width: int,
    height: int,
    fps: int | None = None,
    frames: int | None = None,
    encoding: list[str] = INTERMEDIATE_X264,
) -> None:
    """Re-encodes `source` as H.264 (`encoding`: an intermediate's by default) of width x
    height; with `frames` and `fps`, also stretches it in time to exactly that many frames."""
    filters = [f"scale={width}:{height}:flags=lanczos", "setsar=1"]
    args: list[str] = []
    if frames is not None and fps is not None:
        duration = probe(source).duration or 1.0
        stretch = frames / fps / duration
        filters = [
            f"setpts={stretch:.6f}*PTS",
            f"fps={fps}",
            "tpad=stop_mode=clone:stop=-1",
            *filters,
        ]
        args = ["-frames:v", str(frames)]
    run_ffmpeg(
        ["-i", str(source), "-vf", ",".join(filters), *args, *encoding, "-an", str(output)],
        f"conforming {source.name} to {width}x{height}",
    )


def conform_audio(source: Path, output: Path, *, seconds: float, sample_rate: int) -> None:
    """Re-encodes `source` as stereo FLAC at `sample_rate`, cut or padded to `seconds`."""
    samples = round(seconds * sample_rate)
    run_ffmpeg(
        [
            "-i",
            str(source),
            "-vn",
            "-af",
            f"aresample={sample_rate},aformat=channel_layouts=stereo,"
            f"apad=whole_len={samples},atrim=end_sample={samples}",
            "-c:a",
            "flac",
            str(output),
        ],
        f"conforming {source.name} to {seconds:.3f} s of stereo audio",
    )
