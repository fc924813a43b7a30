"""Each channel's playlist: the asset, the job that rebuilds it, and the sensor that requests
that job when new broadcast clips of the channel land."""

from typing import Any

import dagster as dg

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId
from webtv_dagster.lib.clip_records import latest_clip_number
from webtv_dagster.lib.names import BROADCAST_CLIP, PLAYLIST
from webtv_dagster.lib.partitions import channel_partitions
from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.playlist import build_playlist, playlist_window, publish_playlist
from webtv_dagster.playout.takedowns import read_takedowns
from webtv_dagster.production.planning import MAX_BACKLOG_CLIPS

GUIDE_ROWS = 20


@dg.asset(
    key=PLAYLIST,
    deps=[dg.AssetDep(BROADCAST_CLIP, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=channel_partitions,
    group_name="air",
    kinds={"s3"},
)
def playlist(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> dg.MaterializeResult:
    """The channel's airable clips in clip order (playlist.json and playlist.ffconcat): those
    that passed their quality checks and were not taken down."""
    channel = studio.channel(context.partition_key)
    aired_through = studio.aired_through(channel.slug)
    metadata = refresh_playlist(context.instance, media_storage.store(), channel, aired_through)
    return dg.MaterializeResult(metadata=metadata)


def refresh_playlist(
    instance: dg.DagsterInstance, store: MediaStore, channel: Channel, aired_through: int
) -> dict[str, Any]:
    """Rebuilds and publishes the channel's playlist (its window: the clips past air, as the
    playout state says, up to its highest clip in Dagster); returns its metadata."""
    highest = latest_clip_number(instance, channel.slug)
    window = playlist_window(aired_through, highest, MAX_BACKLOG_CLIPS)
    channel_playlist = build_playlist(store, channel, window)
    as_json, as_ffconcat = publish_playlist(store, channel_playlist)
    guide = ["| clip | seconds | prompt |", "|---|---|---|"] + [
        f"| {entry.clip_id} | {entry.duration_seconds:.2f} | {entry.prompt} |"
        for entry in channel_playlist.entries[-GUIDE_ROWS:]
    ]
    return {
        "clips": len(channel_playlist.entries),
        "total_seconds": round(channel_playlist.total_seconds, 3),
        "taken_down": len(read_takedowns(store, channel.slug).clips),
        "dagster/uri": dg.MetadataValue.path(as_json.uri),
        "ffconcat_uri": dg.MetadataValue.path(as_ffconcat.uri),
        "latest_clips": dg.MetadataValue.md("\n".join(guide)),
    }


def republish_playlist(
    context: dg.OpExecutionContext, studio: Studio, store: MediaStore, channel: Channel
):
    """Rebuilds the channel's playlist from an op, recorded as a materialization of `playlist`
    (the clips it lists changed outside a playlist run)."""
    aired_through = studio.aired_through(channel.slug)
    metadata = refresh_playlist(context.instance, store, channel, aired_through)
    context.log_event(dg.AssetMaterialization(PLAYLIST, partition=channel.slug, metadata=metadata))


playlist_job = dg.define_asset_job(
    "playlist_job", selection=[playlist], description="Rebuilds a channel's playlist."
)


@dg.sensor(
    job=playlist_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def playlist_refresh_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Rebuilds a channel's playlist after new broadcast clips of that channel materialize."""
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=BROADCAST_CLIP, after_storage_id=after),
        limit=1000,
        ascending=True,
    )
    if not result.records:
        return dg.SensorResult(skip_reason="no new broadcast clips")
    latest: dict[str, int] = {}
    for record in result.records:
        key = record.partition_key
        if key:
            latest[ClipId.parse(key).channel] = record.storage_id
    known = set(context.instance.get_dynamic_partitions(channel_partitions.name))
    run_requests = [
        dg.RunRequest(run_key=f"playlist:{slug}@{storage_id}", partition_key=slug)
        for slug, storage_id in sorted(latest.items())
        if slug in known
    ]
    return dg.SensorResult(run_requests=run_requests, cursor=str(result.records[-1].storage_id))
