"""Retention: each channel's old aired clips leave the bucket by its policy, hourly, and Dagster
forgets what is gone."""

import time

import dagster as dg
from pydantic import Field

from webtv_dagster.defs.air.playlist import republish_playlist
from webtv_dagster.lib.history import (
    HISTORY_DAYS,
    forget_clips,
    forget_old_observations,
    forget_old_runs,
)
from webtv_dagster.lib.resources import DagsterHistory, S3MediaStorage, Studio
from webtv_dagster.playout.takedowns import forget_takedowns
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.retention import (
    clips_to_remove,
    intermediates_to_remove,
    remove_clip,
    remove_intermediates,
    stored_clips,
)
from webtv_dagster.production.shot_requests import RequestQueue


class RetentionConfig(dg.Config):
    channel: str = Field("", description="one channel; empty: every channel with a policy")


@dg.op
def apply_retention(
    context: dg.OpExecutionContext,
    config: RetentionConfig,
    studio: Studio,
    media_storage: S3MediaStorage,
    dagster_history: DagsterHistory,
):
    """Removes each channel's old aired clips from the bucket by its `retention:` policy (keep
    days, keep GB), never a clip that has not aired nor one kept for replays, and the playlist
    is rebuilt without them; removes intermediates a while after their clip passed QC. Dagster
    forgets what is gone: the removed clips' partitions and runs, and the runs of every job and
    the observations of every asset older than a week that no clip needs (lib/history.py).
    Decided shot requests are forgotten after 30 days (shot_requests.HISTORY_SECONDS)."""
    store = media_storage.store()
    data_dir = studio.data_folder
    now = time.time()
    channels = [studio.channel(config.channel)] if config.channel else studio.channels.channels
    for channel in channels:
        policy = channel.retention
        aired_through = studio.aired_through(channel.slug)
        clips = stored_clips(store, channel.slug)
        removed = clips_to_remove(clips, policy, aired_through, now)
        for clip in removed:
            remove_clip(store, clip)
        gone = {clip.clip_id for clip in removed}
        trimmed = [c for c in intermediates_to_remove(clips, policy, now) if c.clip_id not in gone]
        for clip in trimmed:
            remove_intermediates(store, clip)
        runs = forget_clips(context.instance, sorted(gone))
        forget_takedowns(store, channel.slug, gone)
        freed = sum(c.size_bytes for c in removed) + sum(c.intermediate_bytes for c in trimmed)
        context.log.info(
            f"{channel.slug}: removed {len(removed)} of {len(clips)} clip(s)"
            + (f" ({removed[0].clip_id} .. {removed[-1].clip_id})" if removed else "")
            + f" and the intermediates of {len(trimmed)}, {freed} bytes, by "
            f"{policy.model_dump_json(exclude_none=True)} (aired through {aired_through}); "
            f"Dagster forgot their partitions and {runs} run(s)"
        )
        if removed:
            republish_playlist(context, studio, store, channel)
    if queue_path(data_dir).exists():
        forgotten = RequestQueue(queue_path(data_dir)).prune(now)
        context.log.info(f"forgot {forgotten} decided shot request(s) past their history")
    runs = forget_old_runs(context.instance, now, dagster_history.jobs)
    observations = sum(
        forget_old_observations(context.instance, asset_key, now)
        for asset_key in dagster_history.asset_keys()
    )
    context.log.info(
        f"Dagster forgot {runs} run(s) and {observations} observation(s) older than "
        f"{HISTORY_DAYS} days"
    )


@dg.job(description="Applies each channel's retention policy (config: channel, optional).")
def retention_job():
    apply_retention()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    # Hourly: a channel makes up to 450 clips an hour, so a keep_gb bucket overshoots by at
    # most an hour's clips, and each run's share of the deletes stays short.
    cron_schedule="30 * * * *",
    job=retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, removes old aired clips by each channel's retention policy.",
)
