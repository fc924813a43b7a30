"""The deployment's settings: read from the environment once per process (`Settings.from_env`
in `webtv` commands and where the code location loads), then handed down as arguments and
Dagster resources. Every one is documented, with its default, in docs/configuration.md.

This is the one module that reads the process environment: besides the settings, the secrets a
channels file names by variable (`named_secret`) and what a child process inherits
(`child_environment`, which also hands a child the settings it must read).
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from webtv_dagster.channels import DEFAULT_CHANNELS_FILE

PREFIX = "WEBTV_"
MIRRORS_PREFIX = PREFIX + "MIRRORS_"
MIN_OPERATOR_TOKEN = 16


class SettingsError(ValueError):
    """Settings in the environment that cannot be used, each named by its variable."""


class MirrorVariables(PydanticBaseSettingsSource):
    """Every WEBTV_MIRRORS_<SLUG> variable (one per channel that is mirrored, so they cannot be
    fields): {SLUG: its comma-separated RTMP URLs}."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        mirrors = {
            name[len(MIRRORS_PREFIX) :]: value
            for name, value in os.environ.items()
            if name.startswith(MIRRORS_PREFIX) and value.strip()
        }
        return {"mirrors": mirrors} if mirrors else {}


def _unprefixed(variable: str, default: Any = None) -> Any:
    """A setting read from `variable`, without the WEBTV_ prefix (as boto3 and Dagster name
    it)."""
    return Field(default, validation_alias=AliasChoices(variable), description=variable)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    channels_file: Path = DEFAULT_CHANNELS_FILE
    data_dir: Path = Path("data")
    s3_endpoint_url: str = "http://127.0.0.1:8333"
    s3_bucket: str = "media"
    s3_region: str = "us-east-1"
    # Whether `webtv up` serves the S3 endpoint itself when it is a loopback address.
    embedded_s3: bool = True
    clips_per_run: int = Field(8, ge=1, le=100)
    parallel_clips: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1, le=256)
    motion_height: int = Field(320, ge=0, le=2160)
    rtmp_port: int = Field(1935, ge=1, lt=65536)
    hls_port: int = Field(8080, ge=1, lt=65536)
    # The address the viewer's port (HLS, the page, the API) listens on: loopback behind a
    # proxy on the host; 0.0.0.0 in a pod, where a Service or an ingress is the way in. RTMP
    # publishing stays on loopback.
    http_listen: IPv4Address = IPv4Address("127.0.0.1")
    # The reverse proxies in front of nginx (Caddy on the host: 127.0.0.1/32), whose
    # X-Forwarded-For names the viewer: comma-separated networks; none: no header is believed.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = []

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    playout_cache_mb: int = Field(2048, ge=64, le=1_048_576)
    # The FFmpeg executable a channel's publisher runs; None: scripts/build-publisher-ffmpeg's
    # slim build where it lies beside the interpreter, else the system's ffmpeg.
    publisher_ffmpeg: str | None = None
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = "in_process"
    celery_broker: str = "redis://127.0.0.1:6379/0"
    celery_backend: str = ""
    stage_retries: int = Field(2, ge=0, le=10)
    stage_retry_delay_seconds: float = Field(30, ge=0, le=3600, allow_inf_nan=False)
    # Below this much free space on the data folder's disk the watchdog alerts (production
    # fails there; the channels air from their caches).
    disk_low_mb: int = Field(64, ge=1, le=1_048_576)
    # Resident memory past which the watchdog restarts a program of the stack's own Python (a
    # slow leak in a library, Dagster's daemon among them, bounded rather than left to grow).
    memory_ceiling_mb: int = Field(512, ge=64, le=1_048_576)
    # Days of each channel's as-run log kept (playout/as_run.py), today included.
    as_run_days: int = Field(31, ge=1, le=3660)
    playout_stale_seconds: float = Field(90, ge=10, le=86_400, allow_inf_nan=False)
    stop_grace_seconds: float = Field(5, ge=0, le=3600, allow_inf_nan=False)
    public_url: str = ""
    # Secrets: never shown (SecretStr), never written to a record.
    alert_webhook_url: SecretStr = SecretStr("")
    alert_urls: SecretStr = SecretStr("")  # Apprise URLs, comma- or space-separated
    operator_token: SecretStr = SecretStr("")
    # The Dagster UI's password behind the public front (`webtv caddyfile`).
    ui_password: SecretStr = SecretStr("")
    aws_access_key_id: SecretStr | None = _unprefixed("AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = _unprefixed("AWS_SECRET_ACCESS_KEY")
    # WEBTV_MIRRORS_<SLUG>: extra RTMP outputs with their stream keys (stack/nginx.mirror_urls).
    mirrors: dict[str, SecretStr] = {}
    # Where PostgreSQL instance storage is (its port, user, password and database are read by
    # Dagster itself from the other DAGSTER_PG_* variables): empty for SQLite.
    dagster_pg_host: str = _unprefixed("DAGSTER_PG_HOST", "")
    # The Dagster instance's folder; unset: the data folder's dagster/ (stack/instance.py).
    dagster_home: Path | None = _unprefixed("DAGSTER_HOME")
    # Where a systemd service with Type=notify tells it that it is ready and alive.
    notify_socket: str = _unprefixed("NOTIFY_SOCKET", "")

    @field_validator("operator_token")
    @classmethod
    def _operator_token_is_long(cls, token: SecretStr) -> SecretStr:
        # It takes clips off air for whoever has it, from any viewer's page.
        if 0 < len(token.get_secret_value()) < MIN_OPERATOR_TOKEN:
            raise ValueError(
                f"the operator token must have at least {MIN_OPERATOR_TOKEN} characters; "
                "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        return token

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, MirrorVariables(settings_cls)

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the environment; a bad value raises SettingsError naming every
        variable that is wrong (a secret's value is never repeated)."""
        try:
            return cls()
        except ValidationError as error:
            problems = [_problem(issue) for issue in error.errors()]
            raise SettingsError(
                f"{len(problems)} setting(s) in the environment cannot be used:\n"
                + "\n".join(problems)
            ) from None

    def mirror_variable_value(self, slug: str) -> tuple[str, str]:
        """The WEBTV_MIRRORS_<SLUG> variable of a channel, and its value ("" when unset)."""
        suffix = slug.upper().replace("-", "_")
        value = self.mirrors.get(suffix)
        return MIRRORS_PREFIX + suffix, value.get_secret_value() if value else ""


def variable_of(name: str) -> str:
    """The environment variable a settings field is read from."""
    field = Settings.model_fields.get(name)
    if field is not None and field.description:
        return field.description
    return PREFIX + name.upper()


def _problem(issue: Any) -> str:
    name = str(issue["loc"][0]) if issue["loc"] else ""
    field = Settings.model_fields.get(name) or next(
        (f for f in Settings.model_fields.values() if f.description == name), None
    )
    variable = variable_of(name) if name in Settings.model_fields else (name or "settings")
    secret = field is None or "SecretStr" in str(field.annotation)
    shown = "" if secret else f" (got {issue['input']!r})"
    return f"  - {variable}: {issue['msg']}{shown}"


def named_secret(variable: str) -> str | None:
    """The value of a secret that a channels file names by its environment variable (an LLM's
    API key, a Space pool's token, a chat bot's token), or None when unset. Channels name their
    own variables, so these cannot be fields; they are read when a backend or bot is built, so
    a channel added to the file needs no restart of the process that builds it."""
    return os.environ.get(variable) or None


def settings_variables(settings: Settings) -> dict[str, str]:
    """The environment variables `settings` are read from, with their values: what a child
    process needs to read the same settings (secrets included: an environment is visible to
    its owner only, never on a command line)."""
    variables: dict[str, str] = {}
    for name, value in settings:
        if name == "mirrors":
            variables |= {
                MIRRORS_PREFIX + suffix: url.get_secret_value() for suffix, url in value.items()
            }
        elif isinstance(value, SecretStr):
            variables[variable_of(name)] = value.get_secret_value()
        elif isinstance(value, bool):
            variables[variable_of(name)] = "true" if value else "false"
        elif isinstance(value, list):  # comma-separated, as the field reads it
            variables[variable_of(name)] = ",".join(str(item) for item in value)
        elif value is not None:
            variables[variable_of(name)] = str(value)
    return variables


def child_environment(settings: Settings | None = None, **variables: str) -> dict[str, str]:
    """The environment of a child process: this process's, then the variables of `settings`
    (so that the child reads the same settings, however this process changed them), then
    `variables`. The one place a launcher gets a child's environment from."""
    environment = dict(os.environ)
    if settings is not None:
        environment |= settings_variables(settings)
    return environment | variables
