"""Frame interpolators: an upscaled take becomes a smooth 24 fps clip (FILM's job).

Interpolation also sets the clip's length: a few seconds of take are slowed down to fill the
channel's clip length, which frame interpolation makes smooth (the seed article's slow motion).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.space_pool import SpaceBackend
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import broadcast_x264
from webtv_dagster.media.conform import conform_video
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg


class InterpolationRequest(BaseModel):
    fps: int = 24
    frames: int = Field(gt=0, description="Exact number of frames of the clip.")


class Interpolator(Protocol):
    name: str
    endpoint: str

    def interpolate(
        self, source: Path, request: InterpolationRequest, output: Path
    ) -> ModelCall: ...


class MotionInterpolator:
    """Offline motion-compensated interpolation with FFmpeg's minterpolate (mci, bilateral).

    Like the Space's answer, the clip is encoded as the broadcast profile's H.264 (the last
    video stage): the broadcast clip copies it rather than encoding it once more.

    Motion estimation and compensation cost scale with pixels, so they run at no more than
    `motion_height` lines (0: at the source's size) and the result is scaled back with Lanczos.
    When the take was itself Lanczos-upscaled from 320 lines, nothing is lost by that.
    """

    name = "ffmpeg-minterpolate"
    endpoint = "offline"

    def __init__(self, motion_height: int = 320):
        self.motion_height = motion_height

    def interpolate(self, source: Path, request: InterpolationRequest, output: Path) -> ModelCall:
        video = probe(source).video
        if video is None or not video.frames:
            raise ValueError(f"{source.name} has no video frames to interpolate")
        take_seconds = video.frames / video.fps
        clip_seconds = request.frames / request.fps
        stretch = clip_seconds / take_seconds
        filters = [f"setpts={stretch:.6f}*PTS"]
        work_height = video.height
        if 0 < self.motion_height < video.height:
            work_height = self.motion_height
            work_width = round(video.width * work_height / video.height / 2) * 2
            filters.append(f"scale={work_width}:{work_height}:flags=lanczos")
        filters += [
            f"minterpolate=fps={request.fps}:mi_mode=mci:mc_mode=obmc:me_mode=bilat:me=hexbs"
            ":search_param=8:scd=none",
            # The last take frame lands one take interval before the end: hold it there.
            f"tpad=stop_mode=clone:stop_duration={stretch / video.fps:.6f}",
        ]
        if work_height != video.height:
            filters.append(f"scale={video.width}:{video.height}:flags=lanczos")
        filters.append("setsar=1")
        run_ffmpeg(
            ["-i", str(source), "-vf", ",".join(filters), "-frames:v", str(request.frames),
             "-r", str(request.fps), *broadcast_x264(BROADCAST_PROFILE), "-an", str(output)],
            f"interpolating {source.name} to {request.frames} frames at {request.fps} fps",
        )  # fmt: skip
        return ModelCall(backend=self.name, endpoint=self.endpoint)


def film_steps(source_frames: int, target_frames: int) -> int:
    """FILM interpolation steps (each doubles the frames) that reach `target_frames`, 1..4."""
    needed = (target_frames - 1) / max(1, source_frames - 1)
    return int(min(4, max(1, math.ceil(math.log2(max(needed, 1.0))))))


class SpaceInterpolator(SpaceBackend):
    """Interpolation on a pool of FILM-style Gradio Spaces (video, steps, fps by default);
    the answer is then timed to exactly the clip's frames."""

    def interpolate(self, source: Path, request: InterpolationRequest, output: Path) -> ModelCall:
        video = probe(source).video
        if video is None or not video.frames:
            raise ValueError(f"{source.name} has no video frames to interpolate")
        values = {"video": source, "fps": str(request.fps),
                  "interpolation_steps": film_steps(video.frames, request.frames)}  # fmt: skip
        return self.pool.fetch(
            values,
            lambda answer: conform_video(
                answer,
                output,
                width=video.width,
                height=video.height,
                fps=request.fps,
                frames=request.frames,
                encoding=broadcast_x264(BROADCAST_PROFILE),
            ),  # fmt: skip
        )
