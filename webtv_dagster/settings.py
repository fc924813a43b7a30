"""Settings read from the environment, each with a documented default (see README)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from webtv_dagster.channels import DEFAULT_CHANNELS_FILE


class SettingsError(ValueError):
    """Settings in the environment that cannot be used, each named by its variable."""


class Settings(BaseModel):
    channels_file: Path = Field(DEFAULT_CHANNELS_FILE, description="WEBTV_CHANNELS_FILE")
    data_dir: Path = Field(Path("data"), description="WEBTV_DATA_DIR")
    s3_endpoint_url: str = Field("http://127.0.0.1:8333", description="WEBTV_S3_ENDPOINT_URL")
    s3_bucket: str = Field("media", description="WEBTV_S3_BUCKET")
    s3_region: str = Field("us-east-1", description="WEBTV_S3_REGION")
    clips_per_run: int = Field(8, ge=1, le=100, description="WEBTV_CLIPS_PER_RUN")
    parallel_clips: int = Field(
        default_factory=lambda: os.cpu_count() or 2, ge=1, le=256,
        description="WEBTV_PARALLEL_CLIPS",
    )
    motion_height: int = Field(320, ge=0, le=2160, description="WEBTV_MOTION_HEIGHT")
    rtmp_port: int = Field(1935, ge=1, lt=65536, description="WEBTV_RTMP_PORT")
    hls_port: int = Field(8080, ge=1, lt=65536, description="WEBTV_HLS_PORT")
    playout_cache_mb: int = Field(2048, ge=64, le=1_048_576, description="WEBTV_PLAYOUT_CACHE_MB")
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = Field(
        "in_process", description="WEBTV_EXECUTOR"
    )
    celery_broker: str = Field("redis://127.0.0.1:6379/0", description="WEBTV_CELERY_BROKER")
    celery_backend: str = Field("", description="WEBTV_CELERY_BACKEND")
    stage_retries: int = Field(2, ge=0, le=10, description="WEBTV_STAGE_RETRIES")
    stage_retry_delay_seconds: float = Field(
        30, ge=0, le=3600, allow_inf_nan=False, description="WEBTV_STAGE_RETRY_DELAY_SECONDS"
    )
    playout_stale_seconds: float = Field(
        90, ge=10, le=86_400, allow_inf_nan=False, description="WEBTV_PLAYOUT_STALE_SECONDS"
    )
    stop_grace_seconds: float = Field(5, ge=0, le=3600, description="WEBTV_STOP_GRACE_SECONDS")
    public_url: str = Field("", description="WEBTV_PUBLIC_URL")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values = {}
        for name, field in cls.model_fields.items():
            variable = field.description
            if variable and variable in environ:
                values[name] = environ[variable]
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = [
                f"  - {_variable_of(issue['loc'])}: {issue['msg']} (got {issue['input']!r})"
                for issue in error.errors()
            ]
            raise SettingsError(
                f"{len(problems)} setting(s) in the environment cannot be used:\n"
                + "\n".join(problems)
            ) from None


def _variable_of(location: tuple) -> str:
    field = Settings.model_fields.get(str(location[0])) if location else None
    return field.description if field is not None and field.description else "settings"
