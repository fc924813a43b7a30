"""Resources: the media store and the studio (channels + model backends), from the environment."""

import os
from functools import cached_property
from pathlib import Path

import dagster as dg

from webtv_dagster.alerts import AlertError, WebhookNotifier
from webtv_dagster.backends.registry import OfflineSettings, build_backends
from webtv_dagster.channels import Channel, ChannelsFile, find_channel, load_channels
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
    """The channels file and how clips are made on this machine."""

    channels_file: str
    data_dir: str = "data"  # where viewers' shot requests are queued
    parallel_clips: int = 2
    motion_height: int = 320

    @cached_property
    def channels(self) -> ChannelsFile:
        return load_channels(self.channels_file)

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
        return RequestQueue(queue_path(Path(self.data_dir)))

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


def _secret(variable: str) -> dg.EnvVar | None:
    # Unset keys fall back to boto3's own chain (instance roles, ~/.aws); set ones stay
    # EnvVars, so their values never show in the UI.
    return dg.EnvVar(variable) if os.environ.get(variable) else None


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


@dg.definitions
def resources() -> dg.Definitions:
    settings = Settings.from_env()
    return dg.Definitions(
        resources={
            "media_storage": S3MediaStorage(
                public_url=public_base_url(settings),
                endpoint_url=settings.s3_endpoint_url,
                bucket=settings.s3_bucket,
                region=settings.s3_region,
                access_key_id=_secret("AWS_ACCESS_KEY_ID"),
                secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
            ),
            "alert_webhook": AlertWebhook(url=_secret("WEBTV_ALERT_WEBHOOK_URL") or ""),
            "studio": Studio(
                channels_file=str(settings.channels_file),
                data_dir=str(settings.data_dir),
                parallel_clips=settings.parallel_clips,
                motion_height=settings.motion_height,
            ),
        },
        executor=executor(settings),
    )
