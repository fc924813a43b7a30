"""Schedules: channels with a `schedule:` get batches of new clips on a timetable.

Dynamic partitions cannot use `build_schedule_from_partitioned_job`, so each schedule adds its
clip partitions itself and books their runs in the same tick; the buffer sensor leaves clips
that are booked alone, so the two never make the same clip twice.
"""

import dagster as dg

from webtv_dagster.channels import Channel, load_channels
from webtv_dagster.clips import next_clip_ids
from webtv_dagster.defs.jobs import clip_job, retention_job
from webtv_dagster.defs.partitions import clip_partitions
from webtv_dagster.defs.sensors import clip_run_request
from webtv_dagster.planning import run_batches
from webtv_dagster.settings import Settings


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
    def add_scheduled_clips(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        existing = context.instance.get_dynamic_partitions(clip_partitions.name)
        added = next_clip_ids(existing, channel.slug, schedule.clips)
        context.instance.add_dynamic_partitions(clip_partitions.name, [c.key for c in added])
        context.log.info(f"added {added[0].key} .. {added[-1].key}")
        batches = run_batches(added, Settings.from_env().clips_per_run)
        return [clip_run_request(channel, batch) for batch in batches]

    return add_scheduled_clips


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    cron_schedule="30 4 * * *",
    job=retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night, removes old aired clips by each channel's retention policy.",
)


@dg.definitions
def schedules() -> dg.Definitions:
    channels = load_channels(Settings.from_env().channels_file).channels
    clip_schedules = [clip_schedule(channel) for channel in channels if channel.schedule]
    return dg.Definitions(schedules=[*clip_schedules, retention_schedule])
