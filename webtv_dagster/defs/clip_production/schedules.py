"""Schedules: channels with a `schedule:` get batches of new clips on a timetable.

Dynamic partitions cannot use `build_schedule_from_partitioned_job`, so each schedule adds its
clip partitions itself and books their runs in the same tick; the buffer sensor leaves clips
that are booked alone, so the two never make the same clip twice.
"""

import time

import dagster as dg

from webtv_dagster.channels import Channel, ChannelsFile
from webtv_dagster.defs.clip_production.assets import clip_job
from webtv_dagster.defs.clip_production.sensor import clip_run_request
from webtv_dagster.lib.clip_records import add_clips
from webtv_dagster.lib.resources import Studio
from webtv_dagster.production.planning import BacklogFull, run_batches


def clip_schedule(channel: Channel) -> dg.ScheduleDefinition:
    schedule = channel.schedule

    @dg.schedule(
        name=f"{channel.slug.replace('-', '_')}_clip_schedule",
        cron_schedule=schedule.cron,
        execution_timezone=schedule.timezone,
        job=clip_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Adds {schedule.clips} new clips to {channel.slug} at '{schedule.cron}' "
        f"({schedule.timezone}) and requests their runs.",
    )
    def add_scheduled_clips(
        context: dg.ScheduleEvaluationContext, studio: Studio
    ) -> list[dg.RunRequest] | dg.SkipReason:
        aired_through = studio.aired_through(channel.slug)
        try:
            added = add_clips(context.instance, channel, schedule.clips, aired_through)
        except BacklogFull as error:
            return dg.SkipReason(str(error))
        context.log.info(f"added {added[0].key} .. {added[-1].key}")
        # Due on air after the backlog before them (its older clips air first).
        deadline = time.time() + (added[0].number - 1 - aired_through) * channel.clip_seconds
        batches = run_batches(added, studio.clips_per_run)
        return [clip_run_request(channel, batch, deadline) for batch in batches]

    return add_scheduled_clips


def clip_schedules(channels: ChannelsFile) -> list[dg.ScheduleDefinition]:
    """A schedule for each channel with a `schedule:` (made where the code location loads: a
    schedule's timetable is part of its definition, so a changed one needs a reload)."""
    return [clip_schedule(channel) for channel in channels.channels if channel.schedule]
