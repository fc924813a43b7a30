"""Channel definitions: the YAML file an operator writes, validated by pydantic.

A broken file is refused as a whole, with an error that names the file, the channel and the
field, so that nothing starts half-configured.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.model_endpoints import OFFLINE_BACKENDS, ModelEndpoint
from webtv_dagster.prompt_rules import fixed_word_problems

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
DEFAULT_CHANNELS_FILE = Path(__file__).with_name("channels.yaml")

MAX_CLIPS_AT_ONCE = 500  # clips a schedule or an operator adds in one go
MAX_AHEAD_SECONDS = 3_600.0  # an hour of content ready ahead of air

NonEmptyText = Annotated[str, Field(min_length=1, max_length=400)]


class StageBackends(BaseModel):
    """Which implementation serves each model family for a channel: the offline one by its
    name, or a remote model by its name under the file's `models`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_writer: str = OFFLINE_BACKENDS["prompt_writer"]
    text_to_video: str = OFFLINE_BACKENDS["text_to_video"]
    upscaler: str = OFFLINE_BACKENDS["upscaler"]
    interpolator: str = OFFLINE_BACKENDS["interpolator"]
    music: str = OFFLINE_BACKENDS["music"]


class ClipSchedule(BaseModel):
    """New clips on a timetable (a premiere every evening, a batch every hour)."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="When, as a cron expression, e.g. '0 * * * *'")
    clips: int = Field(default=10, ge=1, le=MAX_CLIPS_AT_ONCE, description="Clips added each time")
    timezone: str = Field(default="UTC", description="IANA time zone the cron reads in")

    @field_validator("cron")
    @classmethod
    def _cron_is_valid(cls, cron: str) -> str:
        # Dagster's own rule (5 fields, no impossible dates), so a file that loads schedules: the
        # schedule this cron becomes (defs/clip_production/schedules.py) is built and thrown away.
        import dagster as dg

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its notes on odd intervals: the schedule's
                dg.ScheduleDefinition(name="cron_check", cron_schedule=cron, job_name="check")
        except dg.DagsterInvalidDefinitionError:
            raise ValueError(f"{cron!r} is not a cron expression (e.g. '0 * * * *')") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{timezone!r} is not an IANA time zone (e.g. 'Europe/Paris')"
            ) from None
        return timezone


class OnAirGraphics(BaseModel):
    """Graphics burned into each clip at the broadcast stage (no playout CPU), so that every
    output, mirrors included, carries them; inside the title-safe area."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bug: bool = Field(False, description="the channel's title in the top right corner")
    bug_image: Path | None = Field(
        None,
        description="a logo (PNG, JPEG or WebP, at most 2 MB) drawn as the bug instead of the "
        "title (it turns the bug on); a relative path is read from the channels file's folder",
    )
    lower_third: bool = Field(
        False,
        description="a caption of the shot, and who asked for it for a viewer's request, "
        "in the lower left, from 0.5 s for `lower_third_seconds`",
    )
    lower_third_seconds: float = Field(4.0, ge=1, le=30, allow_inf_nan=False)

    @field_validator("bug_image")
    @classmethod
    def _image_path_from_the_files_folder(
        cls, path: Path | None, info: ValidationInfo
    ) -> Path | None:
        if path is None:
            return None
        if path.suffix.lower() not in BUG_IMAGE_SUFFIXES:
            raise ValueError(f"a bug image is one of {', '.join(BUG_IMAGE_SUFFIXES)} (got {path})")
        folder = (info.context or {}).get("folder")
        return path if path.is_absolute() or folder is None else folder / path


BUG_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
BUG_IMAGE_MAX_BYTES = 2 * 1024 * 1024


class RetentionPolicy(BaseModel):
    """How long a channel keeps its clips in the bucket (webtv_dagster/production/retention.py)."""

    model_config = ConfigDict(extra="forbid")

    keep_days: float | None = Field(
        None, gt=0, le=36_500, allow_inf_nan=False, description="remove clips older than this"
    )
    keep_gb: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="remove the oldest clips beyond this",
    )
    protect_recent: int = Field(
        10, ge=0, le=10_000, description="aired clips kept for replays whatever their age or size"
    )
    keep_intermediates_hours: float | None = Field(
        24,
        ge=0,
        le=8_760,
        allow_inf_nan=False,
        description="upscaled and interpolated takes are removed this long after the broadcast "
        "clip passed QC; null keeps them",
    )


class TokenRefresh(BaseModel):
    """How the chat bot keeps its Twitch token valid itself (audience/twitch_token.py): the
    application's client id, and the variables holding its client secret and the bot's refresh
    token (secrets never live in this file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(pattern=r"^[A-Za-z0-9]{1,100}$", description="the application's id")
    client_secret_env: str = Field("WEBTV_TWITCH_CLIENT_SECRET", pattern=r"^[A-Z_][A-Z0-9_]*$")
    refresh_token_env: str = Field("WEBTV_TWITCH_REFRESH_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
    token_url: str = Field(
        "https://id.twitch.tv/oauth2/token", max_length=2000, pattern=r"^https?://\S+$"
    )
    validate_url: str = Field(
        "https://id.twitch.tv/oauth2/validate", max_length=2000, pattern=r"^https?://\S+$"
    )


class ChatBot(BaseModel):
    """The channel's chat bot: viewers type `!add <idea>` in an IRC chat (Twitch chat is IRC
    over TLS at irc.chat.twitch.tv:6697). Its token is read from the variable `token_env`,
    never from this file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str = Field(
        "irc.chat.twitch.tv", min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$"
    )
    port: int = Field(6697, ge=1, lt=65536)
    tls: bool = True
    channel: str = Field(pattern=r"^#[A-Za-z0-9_-]{1,50}$", description="e.g. '#mychannel'")
    nick: str = Field(pattern=r"^[A-Za-z0-9_-]{1,50}$", description="the bot account's login")
    token_env: str = Field(
        "WEBTV_TWITCH_TOKEN",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="variable holding the OAuth token (oauth:...) the bot logs in with",
    )
    announce_seconds: float = Field(
        30,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="a requested clip is announced this long before it airs",
    )
    reply_interval_seconds: float = Field(
        1.5,
        ge=0.3,
        le=60,
        allow_inf_nan=False,
        description="at least this long between two messages of the bot (Twitch disconnects "
        "an account that sends over 20 in 30 s; 0.3 suits a bot that is a channel moderator)",
    )
    refresh: TokenRefresh | None = Field(
        None, description="refresh the token before it expires (Twitch's refresh-token flow)"
    )

    @property
    def secret_variables(self) -> list[str]:
        """The environment variables the bot needs: its token's, and its refresh's."""
        if self.refresh is None:
            return [self.token_env]
        return [self.token_env, self.refresh.client_secret_env, self.refresh.refresh_token_env]


class ShotRequestPolicy(BaseModel):
    """Whether and how viewers may request shots (webtv_dagster/production/shot_requests.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    approval: Literal["auto", "operator"] = Field(
        "operator",
        description="auto: what passes moderation is queued at once; operator: it "
        "waits for approval in Dagster (review_requests_job)",
    )
    share: float = Field(
        0.25,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="at most this share of the channel's clips are viewers' requests",
    )
    max_queue: int = Field(50, ge=1, le=1_000, description="requests waiting at most")
    per_client: int = Field(3, ge=1, le=100, description="requests one viewer may make ...")
    per_client_seconds: float = Field(
        600, ge=1, le=86_400, allow_inf_nan=False, description="... within this many seconds"
    )
    blocked_words: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list,
        max_length=10_000,
        description="words and phrases refused in requests, beside the built-in list",
    )
    builtin_blocked_words: bool = Field(
        True, description="also refuse the built-in list (webtv_dagster/backends/blocked_words.txt)"
    )
    judge: str | None = Field(
        None,
        description="an OpenAI-compatible model under `models` that judges each request "
        "after the rules and the word list",
    )
    chat: ChatBot | None = None


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=SLUG_PATTERN, max_length=40)
    title: NonEmptyText
    theme: NonEmptyText
    style: NonEmptyText
    recurring_details: list[NonEmptyText] = Field(
        default_factory=list,
        max_length=100,
        description="Details repeated verbatim in every prompt so that shots stay consistent.",
    )
    subjects: list[NonEmptyText] = Field(
        default_factory=list,
        max_length=100,
        description="Who or what the shots show; empty means the theme itself is the subject.",
    )
    actions: list[NonEmptyText] = Field(
        default_factory=list,
        max_length=100,
        description="What the subject does; empty means built-in actions.",
    )
    settings: list[NonEmptyText] = Field(
        default_factory=list,
        max_length=100,
        description="Where shots happen; empty means built-in settings.",
    )
    music_mood: NonEmptyText = "uplifting"
    clip_seconds: float = Field(default=8.0, gt=0, le=32, allow_inf_nan=False)
    take_frames: int = Field(default=24, ge=8, le=48, description="Frames per raw take.")
    take_fps: int = Field(default=8, ge=4, le=30)
    ahead_seconds: float = Field(
        default=120.0,
        ge=0,
        le=MAX_AHEAD_SECONDS,
        allow_inf_nan=False,
        description="Seconds of unaired content to keep ready (at most an hour).",
    )
    seed: int = Field(default=0, ge=0, lt=2**31, description="Base seed of the channel.")
    scene_clips: int = Field(
        default=1,
        ge=1,
        le=8,  # the prompts a clip's writer sees reach 8 clips back (stages.RECENT_PROMPTS)
        description="Clips per scene: each clip after a scene's first continues it, its take "
        "starting from the last frame of the clip before (image-to-video) and its prompt "
        "written as the scene's next shot. 1: every clip a shot of its own.",
    )
    backends: StageBackends = Field(default_factory=StageBackends)
    schedule: ClipSchedule | None = Field(
        default=None, description="Batches of new clips made on a timetable, beside the buffer."
    )
    retention: RetentionPolicy = Field(
        default_factory=RetentionPolicy,
        description="Old aired clips removed by age or total size (default: every clip kept), "
        "and intermediates a day after their clip passed QC.",
    )
    requests: ShotRequestPolicy = Field(
        default_factory=ShotRequestPolicy,
        description="Viewers' shot requests from the web viewer and chat (off by default).",
    )
    graphics: OnAirGraphics = Field(
        default_factory=OnAirGraphics,
        description="On-air graphics burned into each clip: the bug and the lower third (off).",
    )

    @field_validator("clip_seconds")
    @classmethod
    def _clip_length_joins_without_gaps(cls, seconds: float) -> float:
        # Only lengths whose video frames and AAC frames end together join gaplessly by copy.
        unit = BROADCAST_PROFILE.aligned_clip_seconds
        units = seconds / unit
        if abs(units - round(units)) > 1e-3 or round(units) < 1:
            lower = max(1, math.floor(units)) * unit
            upper = max(1, math.ceil(units)) * unit
            raise ValueError(
                f"{seconds} s does not join gaplessly: a clip must last a multiple of "
                f"{unit:.4f} s (64 frames at 24 fps = 125 AAC frames at 48 kHz); "
                f"nearest lengths are {lower:.4f} and {upper:.4f}"
            )
        return round(units) * unit

    @property
    def clip_frames(self) -> int:
        return round(self.clip_seconds * BROADCAST_PROFILE.fps)

    def scene_of(self, number: int) -> tuple[int, int]:
        """The scene (from 0) of clip `number` (from 1) and the clip's shot in it (0: first)."""
        return divmod(number - 1, self.scene_clips)

    @property
    def forbidden_terms(self) -> list[str]:
        """Words a video model would paint into the picture as text for this channel."""
        return [self.title, self.slug]


class ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[Annotated[str, Field(pattern=SLUG_PATTERN)], ModelEndpoint] = Field(
        default_factory=dict
    )
    channels: list[Channel] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _channels_fit_together(self) -> ChannelsFile:
        problems = cross_problems(self.models, self.channels)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def cross_problems(
    models: dict[str, ModelEndpoint],
    channels: list[Channel],
    invalid_models: frozenset[str] = frozenset(),
) -> list[str]:
    """What is wrong between fields that are each valid: slugs used twice, backends the file
    does not define (a model that is there but invalid is reported on its own), and fixed
    words (style, recurring details, vocabulary) that would make every prompt of a channel
    break the prompt rules."""
    problems = []
    seen: set[str] = set()
    for channel in channels:
        if channel.slug in seen:
            problems.append(f"channel slug {channel.slug!r} is used twice")
        seen.add(channel.slug)
        for family, name in channel.backends.model_dump().items():
            offline = OFFLINE_BACKENDS[family]
            model = models.get(name)
            if name == offline or name in invalid_models or (model and model.family == family):
                continue
            fitting = [key for key, m in models.items() if m.family == family]
            problems.append(
                f"channel {channel.slug!r}, field 'backends.{family}': no {family} "
                f"backend {name!r} (choose {offline!r}"
                + (f" or one of models {fitting})" if fitting else ")")
            )
        problems += [f"channel {channel.slug!r}, {why}" for why in fixed_word_problems(channel)]
        judge = channel.requests.judge
        if judge is not None and judge not in invalid_models and models.get(judge) is None:
            problems.append(
                f"channel {channel.slug!r}, field 'requests.judge': no model {judge!r} under "
                "'models' (an OpenAI-compatible one)"
            )
        elif judge is not None and judge in models and models[judge].kind != "openai":
            problems.append(
                f"channel {channel.slug!r}, field 'requests.judge': model {judge!r} is a "
                f"{models[judge].kind} model; a judge is an OpenAI-compatible one"
            )
    return problems


class ChannelConfigError(ValueError):
    """A channels file that cannot be used, with every problem named."""


def _describe_location(raw: object, loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2 and loc[0] == "channels" and isinstance(loc[1], int):
        index = loc[1]
        slug = None
        if isinstance(raw, dict) and isinstance(raw.get("channels"), list):
            entries = raw["channels"]
            if index < len(entries) and isinstance(entries[index], dict):
                slug = entries[index].get("slug")
        who = f"channel {slug!r}" if slug else f"channel #{index + 1}"
        field = ".".join(str(part) for part in loc[2:]) or "(the whole entry)"
        return f"{who}, field {field!r}"
    return "field " + repr(".".join(str(part) for part in loc) or "(top level)")


MAX_CHANNELS_FILE_BYTES = 1_000_000
MAX_CHANNELS_FILE_NODES = 200_000  # values once aliases are expanded: 500 full channels fit


def _expanded_nodes(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values `node` stands for once every alias in it is expanded, counted without
    expanding (an alias is the node it names: each is counted once, then reused)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ChannelConfigError("an alias refers to a value that contains it")
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_nodes(item, sizes, open_nodes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(
            _expanded_nodes(name, sizes, open_nodes) + _expanded_nodes(value, sizes, open_nodes)
            for name, value in node.value
        )
    else:
        size = 1
    open_nodes.discard(key)
    sizes[key] = size
    return size


def _read_yaml(path: Path) -> object:
    """The file's YAML, refusing what a hostile one uses and no channels file needs: more
    than MAX_CHANNELS_FILE_BYTES, nesting deep enough to exhaust the parser, and aliases that
    expand past MAX_CHANNELS_FILE_NODES values (a few lines of nested aliases stand for
    billions of items for the validator to walk). Anchors and aliases within that are fine."""
    if path.stat().st_size > MAX_CHANNELS_FILE_BYTES:
        raise ChannelConfigError(
            f"{path}: {path.stat().st_size} bytes; a channels file has at most "
            f"{MAX_CHANNELS_FILE_BYTES}"
        )
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        size = _expanded_nodes(root, {}, set()) if root is not None else 0
    except RecursionError:
        raise ChannelConfigError(f"{path}: nested too deep for a channels file") from None
    except ChannelConfigError as error:
        raise ChannelConfigError(f"{path}: {error}") from None
    if size > MAX_CHANNELS_FILE_NODES:
        raise ChannelConfigError(
            f"{path}: its aliases expand to {size} values; a channels file has at most "
            f"{MAX_CHANNELS_FILE_NODES} (write the values out, or fewer of them)"
        )
    return yaml.safe_load(text)


def load_channels(path: Path | str) -> ChannelsFile:
    path = Path(path)
    try:
        raw = _read_yaml(path)
    except FileNotFoundError as error:
        raise ChannelConfigError(f"{path}: channels file not found") from error
    except UnicodeDecodeError as error:
        raise ChannelConfigError(f"{path}: not UTF-8 text ({error.reason})") from error
    except yaml.YAMLError as error:
        raise ChannelConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        # Relative paths in the file (a bug image) are read from the file's folder.
        return ChannelsFile.model_validate(raw, context={"folder": path.parent.absolute()})
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            message = issue["msg"].removeprefix("Value error, ")
            if issue["type"] in NUMBER_ERRORS:
                message += f" (got {issue['input']!r})"
            if issue["loc"]:
                problems.append(f"  - {_describe_location(raw, tuple(issue['loc']))}: {message}")
            else:  # whole-file checks name their channel and field themselves
                problems += [f"  - {line}" for line in message.splitlines()]
        if any(issue["loc"] for issue in error.errors()):
            # Fields failed, so the whole-file checks did not run: run them on what is valid.
            problems += [f"  - {why}" for why in _cross_problems_of_valid_parts(raw)]
        raise ChannelConfigError(
            f"{path}: {len(problems)} problem(s) in the channels file:\n" + "\n".join(problems)
        ) from None


# Pydantic's errors for numbers out of bounds or not finite: the value is shown with them.
NUMBER_ERRORS = {
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "int_parsing",
    "float_parsing",
    "int_from_float",
}


def _cross_problems_of_valid_parts(raw: object) -> list[str]:
    """cross_problems over the models of `raw` that are valid on their own, and its channels
    without their invalid fields (reported already)."""
    if not isinstance(raw, dict):
        return []
    models, channels = {}, []
    raw_models = raw.get("models")
    endpoint = TypeAdapter(ModelEndpoint)
    invalid = set()
    for name, entry in (raw_models if isinstance(raw_models, dict) else {}).items():
        try:
            models[name] = endpoint.validate_python(entry)
        except ValidationError:
            invalid.add(name)
    raw_channels = raw.get("channels")
    for entry in raw_channels if isinstance(raw_channels, list) else []:
        try:
            channels.append(Channel.model_validate(entry))
        except ValidationError as error:
            invalid = {issue["loc"][0] for issue in error.errors() if issue["loc"]}
            if isinstance(entry, dict):
                with contextlib.suppress(ValidationError):
                    channels.append(
                        Channel.model_validate(
                            {key: value for key, value in entry.items() if key not in invalid}
                        )
                    )
    return cross_problems(models, channels, frozenset(invalid)) if channels else []


def find_channel(channels: ChannelsFile, slug: str) -> Channel:
    for channel in channels.channels:
        if channel.slug == slug:
            return channel
    known = ", ".join(channel.slug for channel in channels.channels)
    raise ChannelConfigError(f"no channel {slug!r} in the channels file (known: {known})")
