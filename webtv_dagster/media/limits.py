"""Bounds on media from outside the process (a model's answer), checked with ffprobe before any
stage decodes it: a two-hour take, a still image or a 16K frame is refused in a second instead of
costing an hour of upscaling or the machine's memory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from webtv_dagster.media.ffmpeg import MediaInfo, MediaToolError, probe

# ffprobe's names of still-image formats: one picture, whatever its file name says.
IMAGE_FORMATS = {
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
    "bmp_pipe",
    "tiff_pipe",
    "gif_pipe",
    "image2",
    "svg_pipe",
    "qoi_pipe",
    "j2k_pipe",
}


class MediaRefused(ValueError):
    """A file is not the media a stage accepts; the message says what it is and the bound."""


class MediaLimits(BaseModel):
    """What a stage accepts: the kind of media, its length, and for video its picture."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["video", "audio"]
    max_seconds: float
    min_seconds: float = 0.2
    max_width: int = 4096
    max_height: int = 4096
    max_fps: float = 120.0

    @classmethod
    def around(cls, kind: Literal["video", "audio"], expected_seconds: float) -> MediaLimits:
        """Generous bounds for an answer expected to last `expected_seconds`: a model may pad or
        trim a little (the stages conform lengths), never run minutes past it."""
        return cls(kind=kind, max_seconds=3 * expected_seconds + 10)


def check_media(path: Path, limits: MediaLimits) -> MediaInfo:
    """The file's probe if it is within `limits`; MediaRefused otherwise. A video's length is
    also measured from the packets ffprobe counts, not only taken from the container's header
    (an audio answer's length is the header's: the music stage cuts it to the clip anyway)."""
    try:
        info = probe(path)
    except MediaToolError:
        raise MediaRefused(f"not a media file ffprobe can read ({limits.kind} expected)") from None
    if info.format in IMAGE_FORMATS:
        raise MediaRefused(f"a still image ({info.format}), not {limits.kind}")
    stream = info.video if limits.kind == "video" else info.audio
    if stream is None:
        raise MediaRefused(f"no {limits.kind} stream (format {info.format})")
    seconds = max(info.duration, stream.duration)
    if info.video is not None and limits.kind == "video":
        video = info.video
        if video.width > limits.max_width or video.height > limits.max_height:
            raise MediaRefused(
                f"{video.width}x{video.height} pictures; at most "
                f"{limits.max_width}x{limits.max_height} accepted"
            )
        if video.fps > limits.max_fps:
            raise MediaRefused(f"{video.fps:g} fps; at most {limits.max_fps:g} accepted")
        if video.fps <= 0:
            raise MediaRefused("no frame rate: not a video a stage can time")
        if video.frames is not None and video.frames < 2:
            raise MediaRefused(f"{video.frames} frame(s): a still, not a video")
        if video.frames is not None:
            seconds = max(seconds, video.frames / video.fps)
    if seconds > limits.max_seconds:
        raise MediaRefused(
            f"{seconds:.1f} s of {limits.kind}; at most {limits.max_seconds:.1f} s accepted"
        )
    if seconds < limits.min_seconds:
        raise MediaRefused(
            f"{seconds:.2f} s of {limits.kind}; at least {limits.min_seconds:g} s needed"
        )
    return info
