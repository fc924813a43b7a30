"""Each channel's ident: a filler clip made by the pipeline (production/ident.py) and stored in
the bucket, where the channel's playout fetches it. The sensor makes it once a channel is known
to Dagster, and again whenever what it is made from changes; `webtv channel start` makes a
missing one before the channel's first air (materialize_missing_ident)."""

import logging
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ident_key
from webtv_dagster.defs.resources import resources_for
from webtv_dagster.lib.partitions import channel_partitions
from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.media.ffmpeg import MediaInfo, probe
from webtv_dagster.media_store import MediaStore
from webtv_dagster.production.ident import (
    IDENT_BACKENDS,
    TitleRefused,
    ident_fingerprint,
    ident_prompt,
    judge_title,
    make_ident,
    publish_ident,
)
from webtv_dagster.settings import Settings
from webtv_dagster.stack.instance import open_instance
from webtv_dagster.storage import StorageError, StoredObject

log = logging.getLogger(__name__)


@dg.asset(
    partitions_def=channel_partitions,
    group_name="air",
    kinds={"video", "s3"},
)
def channel_ident(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> dg.MaterializeResult:
    """The channel's ident (channels/<slug>/ident.mp4): 5.3 s with the channel's title on it,
    made with the offline backends in the broadcast profile. The playout airs it when it has no
    clip to air, from a local copy once fetched."""
    channel = studio.channel(context.partition_key)
    try:
        verdict = judge_title(channel, studio.prompt_moderators(channel))
    except TitleRefused as refused:
        raise dg.Failure(str(refused), allow_retries=False) from None
    with tempfile.TemporaryDirectory(prefix="webtv-ident-") as scratch:
        ident = make_ident(channel, Path(scratch) / "ident.mp4")
        media = probe(ident)
        stored = publish_ident(media_storage.store(), channel.slug, ident)
    metadata = ident_metadata(channel, stored, media)
    metadata["title_judged_by"] = f"{verdict.decided_by}: {verdict.reason}"
    return dg.MaterializeResult(metadata=metadata)


def ident_metadata(channel: Channel, stored: StoredObject, media: MediaInfo) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "prompt": ident_prompt(channel),
        "seed": channel.seed,
        "backend": IDENT_BACKENDS,
        "made_from": ident_fingerprint(channel),
        "dagster/uri": dg.MetadataValue.path(stored.uri),
        "size_bytes": stored.size_bytes,
        "duration_seconds": media.duration,
    }
    if media.video is not None:
        metadata |= {
            "resolution": f"{media.video.width}x{media.video.height}",
            "fps": media.video.fps,
            "frames": media.video.frames or 0,
        }
    return metadata


ident_job = dg.define_asset_job(
    "ident_job", selection=[channel_ident], description="Makes a channel's ident."
)


@dg.sensor(
    job=ident_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def channel_ident_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> list:
    """Requests the ident of every channel Dagster knows, once for what it is made from (title,
    theme, music mood, seed: the run key): a new channel gets its ident within a tick of its
    partition, a renamed one a new ident."""
    known = set(context.instance.get_dynamic_partitions(channel_partitions.name))
    return [
        dg.RunRequest(
            run_key=f"ident:{channel.slug}:{ident_fingerprint(channel)}",
            partition_key=channel.slug,
        )
        for channel in studio.channels.channels
        if channel.slug in known
    ]


def materialize_missing_ident(settings: Settings, slug: str) -> bool:
    """Makes the channel's ident here and now when the bucket has none (a channel started
    before the sensor made it, or with no Dagster daemon running), recorded in the instance
    like any materialization; returns whether it did. With S3 away, or a failure (logged), it
    makes nothing: the playout airs its test card until the ident is there."""
    try:
        if MediaStore.from_settings(settings).list_keys(ident_key(slug)):
            return False
    except StorageError:
        return False
    try:
        with open_instance(settings) as instance:
            if not instance.has_dynamic_partition(channel_partitions.name, slug):
                instance.add_dynamic_partitions(channel_partitions.name, [slug])
            result = dg.materialize(
                [channel_ident],
                partition_key=slug,
                instance=instance,
                resources=resources_for(settings),
                raise_on_error=False,
            )
    except dg.DagsterError as error:
        log.warning("the ident of %s was not made (the test card airs meanwhile): %s", slug, error)
        return False
    return result.success
