"""Resources: the media store, the studio (channels, data folder, model backends) and the alert
webhook, made from the settings the code location read once (`resources_for`)."""

from functools import cached_property
from pathlib import Path

import dagster as dg
from pydantic import SecretStr

from webtv_dagster.alerts import AlertError, WebhookNotifier
from webtv_dagster.backends.registry import OfflineSettings, build_backends
from webtv_dagster.channels import Channel, ChannelsFile, find_channel, load_channels
from webtv_dagster.playout.state import aired_through_of
from webtv_dagster.previews import public_base_url
from webtv_dagster.production import ClipProduction
from webtv_dagster.settings import Settings
from webtv_dagster.shot_requests import RequestQueue, queue_path
from webtv_dagster.storage import MediaStore


class S3MediaStorage(dg.ConfigurableResource):
    """The bucket that holds every clip's media (SeaweedFS, MinIO or AWS S3), and the address
    at which operators' browsers see its previews (the viewer's, WEBTV_PUBLIC_URL)."""

    public_url: str
    endpoint_url: str = ""
    bucket: str = "media"
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def store(self) -> MediaStore:
        return MediaStore(
            bucket=self.bucket,
            endpoint_url=self.endpoint_url or None,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
        )


class Studio(dg.ConfigurableResource):
    """The channels file, the data folder (playout states, shot requests), and how clips are
    made and aired on this machine (see docs/configuration.md for each setting)."""

    channels_file: str
    data_dir: str = "data"
    parallel_clips: int = 2
    motion_height: int = 320
    clips_per_run: int = 8
    stage_retries: int = 2
    stage_retry_delay_seconds: float = 30
    playout_stale_seconds: float = 90

    @classmethod
    def from_settings(cls, settings: Settings) -> "Studio":
        return cls(
            channels_file=str(settings.channels_file),
            data_dir=str(settings.data_dir),
            parallel_clips=settings.parallel_clips,
            motion_height=settings.motion_height,
            clips_per_run=settings.clips_per_run,
            stage_retries=settings.stage_retries,
            stage_retry_delay_seconds=settings.stage_retry_delay_seconds,
            playout_stale_seconds=settings.playout_stale_seconds,
        )

    @property
    def data_folder(self) -> Path:
        return Path(self.data_dir)

    def aired_through(self, slug: str) -> int:
        """The highest clip number of the channel that aired or was skipped (0: none yet)."""
        return aired_through_of(self.data_folder, slug)

    @cached_property
    def channels(self) -> ChannelsFile:
        return load_channels(self.channels_file)

    def slugs(self) -> list[str]:
        return [channel.slug for channel in self.channels.channels]

    def channel(self, slug: str) -> Channel:
        return find_channel(self.channels, slug)

    def production(self, store: MediaStore, slug: str) -> ClipProduction:
        channel = self.channel(slug)
        backends = build_backends(
            channel.backends, self.channels.models, OfflineSettings(self.motion_height)
        )
        return ClipProduction(store, channel, backends, self.request_queue(channel))

    def shot_request_queue(self) -> RequestQueue:
        """Every channel's shot requests (one database in the data folder)."""
        return RequestQueue(queue_path(self.data_folder))

    def request_queue(self, channel: Channel) -> RequestQueue | None:
        """The viewers' shot requests, for a channel that takes them."""
        return self.shot_request_queue() if channel.requests.enabled else None


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts go: a webhook URL (Slack, Discord, Mattermost, ...); empty: nowhere. The
    URL is a secret: only its host is ever shown."""

    url: str = ""

    def send(self, log, title: str, details: str, severity: str = "error") -> bool:
        """Posts the alert; a webhook that fails is logged (host only), never raised."""
        if not self.url:
            log.info(f"alert (no webhook configured): {title}")
            return False
        try:
            WebhookNotifier(self.url).send(title, details, severity)
        except AlertError as error:
            log.warning(f"alert not delivered: {error}")
            return False
        return True


def _secret(value: SecretStr | None, variable: str) -> dg.EnvVar | None:
    # Set secrets stay EnvVars, so their values never show in the UI; unset S3 keys fall back
    # to boto3's own chain (instance roles, ~/.aws).
    return dg.EnvVar(variable) if value is not None and value.get_secret_value() else None


def executor(settings: Settings) -> dg.ExecutorDefinition:
    """Where a run's steps execute. In process by default: clip runs parallelize across clips
    inside each step, and a process per step only adds start-up time. Celery spreads the steps
    of every run over workers on other machines (`webtv worker`), Kubernetes over pods, with
    media in S3 and the instance in PostgreSQL."""
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        backend = settings.celery_backend or settings.celery_broker
        return celery_executor.configured({"broker": settings.celery_broker, "backend": backend})
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        # A pod per step, with the run pod's image and environment (deploy/kubernetes).
        return k8s_job_executor.configured({"max_concurrent": 8})
    if settings.executor == "multiprocess":
        # A forkserver forks each step from a process that has imported Dagster already.
        return dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})
    return dg.in_process_executor


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, from the settings it read once."""
    return {
        "media_storage": S3MediaStorage(
            public_url=public_base_url(settings),
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=_secret(settings.aws_access_key_id, "AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret(settings.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY"),
        ),
        "alert_webhook": AlertWebhook(
            url=_secret(settings.alert_webhook_url, "WEBTV_ALERT_WEBHOOK_URL") or ""
        ),
        "studio": Studio.from_settings(settings),
    }
