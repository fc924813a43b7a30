"""Jobs: make clips, refresh playlists, and add new clips to a channel."""

import dagster as dg

from webtv_dagster.clips import next_clip_ids
from webtv_dagster.defs.assets.clips import broadcast_clip, interpolated_clip
from webtv_dagster.defs.assets.music import music_track
from webtv_dagster.defs.assets.playlist import playlist
from webtv_dagster.defs.assets.prompts import shot_prompt
from webtv_dagster.defs.assets.takes import raw_take, upscaled_take
from webtv_dagster.defs.partitions import clip_partitions
from webtv_dagster.defs.resources import Studio

clip_job = dg.define_asset_job(
    "clip_job",
    selection=[
        shot_prompt,
        raw_take,
        upscaled_take,
        interpolated_clip,
        music_track,
        broadcast_clip,
    ],
    partitions_def=clip_partitions,
    description="Makes clips from prompt to broadcast clip.",
    tags={"webtv/stage": "clips"},  # at most two at once (dagster.yaml)
)

playlist_job = dg.define_asset_job(
    "playlist_job", selection=[playlist], description="Rebuilds a channel's playlist."
)


class AddClipsConfig(dg.Config):
    channel: str
    count: int = 10


@dg.op
def add_clip_partitions(context: dg.OpExecutionContext, config: AddClipsConfig, studio: Studio):
    """Adds `count` new clip partitions to the channel; the clip sensor requests their runs."""
    if not 1 <= config.count <= 500:
        raise dg.Failure(f"count must be between 1 and 500, not {config.count}")
    channel = studio.channel(config.channel)
    existing = context.instance.get_dynamic_partitions(clip_partitions.name)
    keys = [clip.key for clip in next_clip_ids(existing, channel.slug, config.count)]
    context.instance.add_dynamic_partitions(clip_partitions.name, keys)
    context.log.info(f"added {len(keys)} clip(s) to {channel.slug}: {keys[0]} .. {keys[-1]}")


@dg.job(description="Adds new clips to a channel (config: channel, count); they are made next.")
def add_clips_job():
    add_clip_partitions()
