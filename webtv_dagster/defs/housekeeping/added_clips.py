"""Clips added to a channel by hand: the job behind `webtv add-clips`'s Dagster twin; the clip
sensor requests their runs."""

import dagster as dg

from webtv_dagster.lib.clip_records import add_clips
from webtv_dagster.lib.resources import Studio
from webtv_dagster.production.planning import check_clip_count


class AddClipsConfig(dg.Config):
    channel: str
    count: int = 10


@dg.op
def add_clip_partitions(context: dg.OpExecutionContext, config: AddClipsConfig, studio: Studio):
    """Adds `count` new clip partitions to the channel; the clip sensor requests their runs."""
    try:
        check_clip_count(config.count)
        channel = studio.channel(config.channel)
        added = add_clips(
            context.instance, channel, config.count, studio.aired_through(channel.slug)
        )
    except (ValueError, KeyError) as error:
        raise dg.Failure(str(error).strip('"')) from None
    context.log.info(
        f"added {len(added)} clip(s) to {channel.slug}: {added[0].key} .. {added[-1].key}"
    )


@dg.job(description="Adds new clips to a channel (config: channel, count); they are made next.")
def add_clips_job():
    add_clip_partitions()
