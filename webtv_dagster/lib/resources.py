"""The resource classes Dagster code is handed: the media store, the studio (channels, data
folder, model backends) and the alert webhook. defs/resources.py makes them from the settings
the code location read once."""

from functools import cached_property
from pathlib import Path

import dagster as dg

from webtv_dagster.backends.moderator import Moderator
from webtv_dagster.backends.registry import (
    OfflineSettings,
    build_backends,
    build_prompt_moderators,
)
from webtv_dagster.channels import Channel, ChannelsFile, find_channel, load_channels
from webtv_dagster.lib.names import IMPLICIT_ASSET_JOB
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.state import aired_through_of
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import RequestQueue
from webtv_dagster.production.stages import ClipProduction
from webtv_dagster.settings import Settings
from webtv_dagster.stack.alerts import notifiers, send_to_all


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
    as_run_days: int = 31

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
            as_run_days=settings.as_run_days,
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
        models = self.channels.models
        backends = build_backends(channel.backends, models, OfflineSettings(self.motion_height))
        moderators = self.prompt_moderators(channel)
        return ClipProduction(store, channel, backends, self.request_queue(channel), moderators)

    def prompt_moderators(self, channel: Channel) -> list[Moderator]:
        """What judges every text the channel shows that no viewer wrote."""
        return build_prompt_moderators(channel, self.channels.models)

    def shot_request_queue(self) -> RequestQueue:
        """Every channel's shot requests (one database in the data folder)."""
        return RequestQueue(queue_path(self.data_folder))

    def request_queue(self, channel: Channel) -> RequestQueue | None:
        """The viewers' shot requests, for a channel that takes them."""
        return self.shot_request_queue() if channel.requests.enabled else None


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts go: a webhook URL (Slack, Discord, Mattermost, ...) and Apprise URLs (any
    notification service); empty: nowhere. The URLs are secrets: never shown."""

    url: str = ""
    apprise_urls: str = ""

    def send(self, log, title: str, details: str, severity: str = "error") -> bool:
        """Sends the alert to each receiver; one that fails is logged (without its secret),
        never raised. True when every receiver took it."""
        receivers = notifiers(self.url, self.apprise_urls)
        if not receivers:
            log.info(f"alert (no receiver configured): {title}")
            return False
        refusals = send_to_all(receivers, title, details, severity)
        for refusal in refusals:
            log.warning(f"alert not delivered: {refusal}")
        return not refusals


class DagsterHistory(dg.ConfigurableResource):
    """What the code location keeps records of in Dagster's storage: the runs of its jobs and
    the events of its assets, which retention forgets once old (lib/history.py). Made from the
    definitions themselves where they are gathered (`of`), so a job or asset added later is
    never missed."""

    jobs: list[str]
    assets: list[str]  # asset keys, as the UI writes them

    @classmethod
    def of(cls, definitions: dg.Definitions) -> "DagsterHistory":
        jobs = {job.name for job in definitions.jobs or []} | {IMPLICIT_ASSET_JOB}
        assets = {
            key.to_user_string()
            for asset in definitions.assets or []
            for key in (asset.keys if isinstance(asset, dg.AssetsDefinition) else [asset.key])
        }
        return cls(jobs=sorted(jobs), assets=sorted(assets))

    def asset_keys(self) -> list[dg.AssetKey]:
        return [dg.AssetKey.from_user_string(key) for key in self.assets]
