"""Choosing an implementation per model family is configuration: the channel names it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from webtv_dagster.backends.interpolator import (
    Interpolator,
    OpticalFlowInterpolator,
    SpaceInterpolator,
)
from webtv_dagster.backends.moderator import (
    Moderator,
    OpenAIJudge,
    RuleModerator,
    WordListModerator,
)
from webtv_dagster.backends.music import (
    MusicGenerator,
    ProceduralMusicGenerator,
    SpaceMusicGenerator,
)
from webtv_dagster.backends.prompt_writer import (
    OpenAIPromptWriter,
    PromptWriter,
    RuleBasedPromptWriter,
)
from webtv_dagster.backends.space_pool import SpaceConnections, SpacePool
from webtv_dagster.backends.text_to_video import (
    ProceduralTextToVideo,
    SpaceTextToVideo,
    TextToVideo,
)
from webtv_dagster.backends.upscaler import LanczosUpscaler, SpaceUpscaler, Upscaler
from webtv_dagster.channels import Channel, StageBackends
from webtv_dagster.model_endpoints import GradioSpacePool, ModelEndpoint, OpenAIEndpoint
from webtv_dagster.settings import named_secret


@dataclass(frozen=True)
class ModelBackends:
    """One channel's backends, made to be used for many clips (every clip of a step) and closed
    after: `close()`, or `with build_backends(...) as backends:`. Their Space pools share
    `connections`, so the calls into one pool are bounded and spread over its Spaces across all
    the clips these backends make at once."""

    prompt_writer: PromptWriter
    text_to_video: TextToVideo
    upscaler: Upscaler
    interpolator: Interpolator
    music: MusicGenerator
    connections: SpaceConnections = field(default_factory=SpaceConnections)

    def close(self) -> None:
        """Closes what the backends hold open: the Spaces' clients, the LLM's HTTP client."""
        if isinstance(self.prompt_writer, OpenAIPromptWriter):
            self.prompt_writer.close()
        self.connections.close()

    def __enter__(self) -> ModelBackends:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class OfflineSettings:
    """Tuning of the offline backends that is the machine's business, not the channel's."""

    motion_height: int = 320


OFFLINE = {
    "prompt_writer": RuleBasedPromptWriter,
    "text_to_video": ProceduralTextToVideo,
    "upscaler": LanczosUpscaler,
    "music": ProceduralMusicGenerator,
}
ON_SPACES = {
    "text_to_video": SpaceTextToVideo,
    "upscaler": SpaceUpscaler,
    "interpolator": SpaceInterpolator,
    "music": SpaceMusicGenerator,
}


def _build(
    family: str,
    name: str,
    models: Mapping[str, ModelEndpoint],
    offline: OfflineSettings,
    connections: SpaceConnections,
):
    model = models.get(name)
    if isinstance(model, OpenAIEndpoint):
        return OpenAIPromptWriter(model, named_secret(model.api_key_env))
    if isinstance(model, GradioSpacePool):
        token = named_secret(model.token_env)
        return ON_SPACES[family](SpacePool(name, model, token, connections))
    if family == "interpolator":
        return OpticalFlowInterpolator(offline.motion_height)
    return OFFLINE[family]()


def build_backends(
    choice: StageBackends, models: Mapping[str, ModelEndpoint], offline: OfflineSettings
) -> ModelBackends:
    """The backends a channel chose (validated against `models` when the file was loaded),
    with the connections they share: build them once for all the clips they make, and close
    them after."""
    connections = SpaceConnections()
    return ModelBackends(
        **{family: _build(family, name, models, offline, connections) for family, name in choice},
        connections=connections,
    )


def _judges(channel: Channel, models: Mapping[str, ModelEndpoint]) -> list[Moderator]:
    judge = models.get(channel.requests.judge or "")
    if isinstance(judge, OpenAIEndpoint):
        return [OpenAIJudge(judge, named_secret(judge.api_key_env))]
    return []


def build_moderators(channel: Channel, models: Mapping[str, ModelEndpoint]) -> list[Moderator]:
    """The channel's moderators in the order they judge a request: its rules and word list,
    then its judge model if it names one."""
    return [RuleModerator(channel), *_judges(channel, models)]


def build_prompt_moderators(
    channel: Channel, models: Mapping[str, ModelEndpoint]
) -> list[Moderator]:
    """What judges the shot prompts a writer wrote, before their clips are made: the word list
    and the judge that viewers' ideas pass (the writers keep to the prompt rules themselves)."""
    return [WordListModerator(channel), *_judges(channel, models)]
