"""Upscalers: a raw take becomes a 1024x576 take (Zeroscope XL's job), with the same prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.space_pool import SpaceBackend
from webtv_dagster.media.conform import INTERMEDIATE_X264, conform_video
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.limits import MediaLimits


class UpscaleRequest(BaseModel):
    prompt: str
    width: int = 1024
    height: int = 576


class Upscaler(Protocol):
    name: str
    endpoint: str

    def upscale(self, source: Path, request: UpscaleRequest, output: Path) -> ModelCall: ...


class LanczosUpscaler:
    """Offline upscaling with FFmpeg's Lanczos scaler: sharper than bilinear, invents no detail."""

    name = "ffmpeg-lanczos"
    endpoint = "offline"

    def upscale(self, source: Path, request: UpscaleRequest, output: Path) -> ModelCall:
        run_ffmpeg(
            [
                "-i",
                str(source),
                "-vf",
                f"scale={request.width}:{request.height}:flags=lanczos,setsar=1",
                *INTERMEDIATE_X264,
                "-an",
                str(output),
            ],
            f"upscaling {source.name} to {request.width}x{request.height}",
        )
        return ModelCall(backend=self.name, endpoint=self.endpoint)


class SpaceUpscaler(SpaceBackend):
    """Upscaling on a pool of Zeroscope XL-style Gradio Spaces (prompt, video by default)."""

    def upscale(self, source: Path, request: UpscaleRequest, output: Path) -> ModelCall:
        take = probe(source)
        return self.pool.fetch(
            {"prompt": request.prompt, "video": source},
            MediaLimits.around("video", take.duration),
            lambda answer: conform_video(
                answer, output, width=request.width, height=request.height
            ),
        )
