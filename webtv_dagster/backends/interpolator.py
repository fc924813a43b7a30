"""Frame interpolators: an upscaled take becomes a smooth 24 fps clip (FILM's job).

Interpolation also sets the clip's length: a few seconds of take are slowed down to fill the
channel's clip length, which frame interpolation makes smooth (the seed article's slow motion).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, Field

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.space_pool import SpaceBackend
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import broadcast_x264
from webtv_dagster.media.conform import conform_video
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.frames import YuvFrame, decode_yuv420_frames
from webtv_dagster.media.limits import MediaLimits


class InterpolationRequest(BaseModel):
    fps: int = 24
    frames: int = Field(gt=0, description="Exact number of frames of the clip.")


class Interpolator(Protocol):
    name: str
    endpoint: str

    def interpolate(
        self, source: Path, request: InterpolationRequest, output: Path
    ) -> ModelCall: ...


class OpticalFlowInterpolator:
    """Offline motion-compensated interpolation: dense optical flow (OpenCV's DIS) both ways
    between neighbouring take frames, and each new frame drawn from both neighbours warped
    along it (Super SloMo's linear approximation of the flow from the new frame's time),
    blended by nearness in time. Planes are warped in yuv420p as decoded: no colour conversion.

    On procedural takes (frames dropped from a 24 fps render, interpolated back), it comes
    1.6 dB closer to the dropped frames than FFmpeg's minterpolate (mci, overlapped blocks), the
    offline interpolator before it, at about half its CPU (benchmarks/interpolation_quality.py).

    Like the Space's answer, the clip is encoded as the broadcast profile's H.264 (the last
    video stage): the broadcast clip copies it rather than encoding it once more. Flow and
    warping run at no more than `motion_height` lines (0: at the source's size) and the result
    is scaled back with Lanczos: nothing is lost when the take was itself upscaled from there.
    """

    name = "opencv-dis-flow"
    endpoint = "offline"

    def __init__(self, motion_height: int = 320):
        self.motion_height = motion_height

    def interpolate(self, source: Path, request: InterpolationRequest, output: Path) -> ModelCall:
        video = probe(source).video
        if video is None or not video.frames:
            raise ValueError(f"{source.name} has no video frames to interpolate")
        height = video.height
        if 0 < self.motion_height < video.height:
            height = self.motion_height
        height -= height % 2  # yuv420p planes: chroma is half of each side
        width = round(video.width * height / video.height / 2) * 2
        take = decode_yuv420_frames(source, width, height)
        # Take frame k is shown at k / fps * stretch: the take is slowed to the clip's length.
        stretch = (request.frames / request.fps) / (len(take) / video.fps)
        positions = [n / request.fps / stretch * video.fps for n in range(request.frames)]
        frames = bytearray()
        warper = _FlowWarper(width, height)
        for position in positions:
            index, t = int(position), position - int(position)
            if index >= len(take) - 1 or t < 1e-6:
                # The last take frame lands one take interval before the end: hold it there.
                frames += b"".join(plane.tobytes() for plane in take[min(index, len(take) - 1)])
            else:
                frames += warper.between(take, index, t)
        scale = (
            f"scale={video.width}:{video.height}:flags=lanczos," if height != video.height else ""
        )
        run_ffmpeg(
            [
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-s",
                f"{width}x{height}",
                "-r",
                str(request.fps),
                "-i",
                "pipe:0",
                "-vf",
                f"{scale}setsar=1",
                "-frames:v",
                str(request.frames),
                *broadcast_x264(BROADCAST_PROFILE),
                "-an",
                str(output),
            ],
            f"encoding {request.frames} interpolated frames of {source.name}",
            stdin=bytes(frames),
        )
        return ModelCall(backend=self.name, endpoint=self.endpoint)


class _FlowWarper:
    """Flow between take frames (computed once per pair) and the warps of the frames between."""

    def __init__(self, width: int, height: int):
        cv2.setNumThreads(1)  # clips run in parallel already (WEBTV_PARALLEL_CLIPS)
        self.flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.grids = (_grid(width, height), _grid(width // 2, height // 2))
        self.pair: tuple[int, np.ndarray, np.ndarray] | None = None

    def _flows(self, take: list[YuvFrame], index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.pair is None or self.pair[0] != index:
            luma_a, luma_b = take[index][0], take[index + 1][0]
            forward = self.flow.calc(luma_a, luma_b, None)
            backward = self.flow.calc(luma_b, luma_a, None)
            self.pair = (index, forward, backward)
        return self.pair[1], self.pair[2]

    def between(self, take: list[YuvFrame], index: int, t: float) -> bytes:
        """The yuv420p frame at time t (0..1) between take frames index and index + 1."""
        forward, backward = self._flows(take, index)
        to_a = (-(1 - t) * t) * forward + (t * t) * backward
        to_b = ((1 - t) * (1 - t)) * forward - (t * (1 - t)) * backward
        luma_grid, chroma_grid = self.grids
        half = (chroma_grid.shape[1], chroma_grid.shape[0])
        # Chroma planes are half size: the flow too, at half length.
        chroma_a = cv2.resize(to_a, half, interpolation=cv2.INTER_AREA) * 0.5
        chroma_b = cv2.resize(to_b, half, interpolation=cv2.INTER_AREA) * 0.5
        planes = []
        for plane, grid, flow_a, flow_b in [
            (0, luma_grid, to_a, to_b),
            (1, chroma_grid, chroma_a, chroma_b),
            (2, chroma_grid, chroma_a, chroma_b),
        ]:
            warped_a = _warp(take[index][plane], grid, flow_a)
            warped_b = _warp(take[index + 1][plane], grid, flow_b)
            planes.append(cv2.addWeighted(warped_a, 1 - t, warped_b, t, 0).tobytes())
        return b"".join(planes)


def _grid(width: int, height: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([xs, ys])


def _warp(plane: np.ndarray, grid: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The plane sampled at each pixel plus its flow (bilinear, edges repeated)."""
    return cv2.remap(plane, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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
        values = {
            "video": source,
            "fps": str(request.fps),
            "interpolation_steps": film_steps(video.frames, request.frames),
        }
        expected = max(video.duration, request.frames / request.fps)
        return self.pool.fetch(
            values,
            MediaLimits.around("video", expected),
            lambda answer: conform_video(
                answer,
                output,
                width=video.width,
                height=video.height,
                fps=request.fps,
                frames=request.frames,
                encoding=broadcast_x264(BROADCAST_PROFILE),
            ),
        )
