from typing import Any

import dagster as dg

from webtv_dagster.channels import Channel
from webtv_dagster.clip_steps import OWNERS
from webtv_dagster.defs.assets.clips import broadcast_clip
from webtv_dagster.defs.clip_records import latest_clip_number
from webtv_dagster.defs.partitions import channel_partitions
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.planning import MAX_BACKLOG_CLIPS
from webtv_dagster.playlist import build_playlist, playlist_window, publish_playlist
from webtv_dagster.storage import MediaStore
from webtv_dagster.takedowns import read_takedowns

GUIDE_ROWS = 20


@dg.asset(
    deps=[dg.AssetDep(broadcast_clip, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=channel_partitions,
    group_name="air",
    kinds={"s3"},
    owners=OWNERS,
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
