"""Choosing an implementation per model family is configuration: the channel names it."""

from __future__ import annotations

from dataclasses import dataclass

from webtv_dagster.backends.interpolator import Interpolator, MotionInterpolator
from webtv_dagster.backends.music import MusicGenerator, ProceduralMusicGenerator
from webtv_dagster.backends.prompt_writer import PromptWriter, RuleBasedPromptWriter
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TextToVideo
from webtv_dagster.backends.upscaler import LanczosUpscaler, Upscaler
from webtv_dagster.channels import StageBackends


@dataclass(frozen=True)
class ModelBackends:
    prompt_writer: PromptWriter
    text_to_video: TextToVideo
    upscaler: Upscaler
    interpolator: Interpolator
    music: MusicGenerator


@dataclass(frozen=True)
class OfflineSettings:
    """Tuning of the offline backends that is the machine's business, not the channel's."""

    motion_height: int = 320


def build_backends(choice: StageBackends, settings: OfflineSettings) -> ModelBackends:
    prompt_writers = {"rule-based": RuleBasedPromptWriter}
    text_to_video = {"procedural": ProceduralTextToVideo}
    upscalers = {"ffmpeg-lanczos": LanczosUpscaler}
    interpolators = {"ffmpeg-minterpolate": lambda: MotionInterpolator(settings.motion_height)}
    music = {"procedural": ProceduralMusicGenerator}
    return ModelBackends(
        prompt_writer=prompt_writers[choice.prompt_writer](),
        text_to_video=text_to_video[choice.text_to_video](),
        upscaler=upscalers[choice.upscaler](),
        interpolator=interpolators[choice.interpolator](),
        music=music[choice.music](),
    )
