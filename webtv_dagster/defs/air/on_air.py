"""Each channel's live stream, as an external asset that Dagster observes but does not make:
the playout process (`webtv playout`) airs it. One sensor reports what the playout reports;
another requests the job that starts the playout again when it is down or stuck."""

import json
import time
from datetime import timedelta

import dagster as dg

from webtv_dagster.lib.names import BROADCAST_CLIP, CHANNEL_TAG, PLAYLIST, PRIORITY
from webtv_dagster.lib.partitions import channel_partitions, clip_partitions
from webtv_dagster.lib.resources import Studio
from webtv_dagster.playout.process import PlayoutStartError, playout_status
from webtv_dagster.playout.state import PlayoutState, read_state
from webtv_dagster.playout.takedowns import TAKEN_DOWN
from webtv_dagster.stack.playouts import ensure_playout

PLAYOUT_CHECK_SECONDS = 15

on_air_stream = dg.AssetSpec(
    "on_air_stream",
    description="The channel's live RTMP/HLS stream, aired by `webtv playout <channel>`.",
    deps=[PLAYLIST],
    partitions_def=channel_partitions,
    group_name="air",
    kinds={"rtmp"},
    # Observed only while the channel airs as it should: two minutes without an observation
    # means a channel has been off air, stuck or unable to publish that long.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=2)),
)


def skip_observations(
    instance: dg.DagsterInstance, state: PlayoutState, after: float
) -> list[dg.AssetObservation]:
    """The clips the playout refused to air since `after`, as observations of their
    broadcast_clip partition with the reason (the operator's cue to rerun them); one it cut or
    left out because it was taken down is recorded as taken down."""
    return [
        dg.AssetObservation(
            asset_key=BROADCAST_CLIP,
            partition=skip.clip_id,
            metadata={
                "on_air": TAKEN_DOWN if skip.taken_down else "skipped by the playout",
                "reason": skip.reason,
            },
        )
        for skip in state.skipped
        if skip.at > after and instance.has_dynamic_partition(clip_partitions.name, skip.clip_id)
    ]


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def on_air_stream_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> dg.SensorResult:
    """Observes each channel's stream from its playout state: clip on air, its prompt,
    unaired seconds left in the playlist, uptime, publisher restarts, and how long since the
    state last moved; and records each clip the playout skipped on that clip's partition."""
    now = time.time()
    skips_seen = json.loads(context.cursor) if context.cursor else {}
    observations = []
    for slug in studio.slugs():
        state = read_state(studio.data_folder, slug)
        if state is None:
            continue
        observations += skip_observations(context.instance, state, skips_seen.get(slug, 0.0))
        if state.skipped:
            skips_seen[slug] = max(skip.at for skip in state.skipped)
        if state.publisher_error or now - state.updated_at > studio.playout_stale_seconds:
            continue  # not airing as it should: no sign of life to record
        on_air = state.on_air(now)
        observations.append(
            dg.AssetObservation(
                asset_key=on_air_stream.key,
                partition=slug,
                metadata={
                    "on_air": on_air.clip_id if on_air else "(starting)",
                    "prompt": on_air.prompt if on_air else "",
                    "unplayed_seconds": round(state.unplayed_seconds, 1),
                    "aired_through": state.aired_through,
                    "uptime_seconds": round(now - state.publisher_started_at, 1),
                    "seconds_since_update": round(now - state.updated_at, 1),
                    "publisher_restarts": state.publisher_restarts,
                },
            )
        )
    if not observations:
        return dg.SensorResult(skip_reason="no channel is on air yet")
    return dg.SensorResult(asset_events=observations, cursor=json.dumps(skips_seen))


class PlayoutConfig(dg.Config):
    channel: str
    restart: bool = False


@dg.op
def ensure_channel_playout(
    context: dg.OpExecutionContext, config: PlayoutConfig, studio: Studio
) -> None:
    """Makes sure the channel is on air: starts `webtv playout <channel>` if none runs, restarts
    one that stopped queueing clips (or any, with `restart`). The playout reads the channel's
    latest playlist before every clip, so a running one needs nothing more."""
    slug = studio.channel(config.channel).slug
    data_dir = studio.data_folder.resolve()
    try:
        action = ensure_playout(
            data_dir, slug, studio.playout_stale_seconds, config.restart, progress=context.log.info
        )
    except PlayoutStartError as error:
        raise dg.Failure(str(error)) from None
    status = playout_status(data_dir, slug)
    context.log.info(f"{slug}: playout {action} (pid {status.pid})")
    context.log_event(
        dg.AssetObservation(
            asset_key=on_air_stream.key,
            partition=slug,
            metadata={"playout": action, "pid": status.pid or 0},
        )
    )


@dg.job(
    description="Starts a channel's playout if it is down or stuck (config: channel, restart).",
    tags={PRIORITY: "10"},  # ahead of queued clip runs
)
def playout_job():
    ensure_channel_playout()


def _recorded(instance: dg.DagsterInstance, slug: str, pid: int) -> bool:
    """Whether the channel's latest playout observation names this pid (playout_job's)."""
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=on_air_stream.key, asset_partitions=[slug]), limit=1
    ).records
    pid_entry = records[0].asset_observation.metadata.get("pid") if records else None
    return pid_entry is not None and pid_entry.value == pid


def restart_backoff_seconds(consecutive_failures: int) -> float:
    return min(PLAYOUT_CHECK_SECONDS * 2**consecutive_failures, 600)


def _waiting_for_earlier_run(instance: dg.DagsterInstance, slug: str, now: float) -> bool:
    """Whether a playout_job run for the channel is still under way, or failed too recently to
    try again (waits double with each failure in a row, up to ten minutes)."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=playout_job.name, tags={CHANNEL_TAG: slug}), limit=6
    )
    if any(not record.dagster_run.is_finished for record in records):
        return True
    failures = 0
    for record in records:
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
    if not failures:
        return False
    last_end = records[0].end_time or records[0].create_timestamp.timestamp()
    return now - last_end < restart_backoff_seconds(failures)


@dg.sensor(
    job=playout_job,
    minimum_interval_seconds=PLAYOUT_CHECK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def playout_watchdog_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> dg.SensorResult:
    """Requests a playout_job run for every channel whose playout is not running or has not
    queued a clip for WEBTV_PLAYOUT_STALE_SECONDS; leaves alone the channels an operator
    stopped (`webtv channel stop`), and backs off after failed restarts. Records on
    `on_air_stream` each playout that came back with a new process meanwhile (supervisord's
    restarts), so every restart shows in Dagster whoever made it."""
    now = time.time()
    requests, observations = [], []
    known_pids = json.loads(context.cursor) if context.cursor else {}
    for slug in studio.slugs():
        status = playout_status(studio.data_folder, slug, now)
        if status.pid:
            changed = known_pids.get(slug) not in (None, status.pid)
            if changed and not _recorded(context.instance, slug, status.pid):
                observations.append(
                    dg.AssetObservation(
                        asset_key=on_air_stream.key,
                        partition=slug,
                        metadata={"playout": "restarted by its supervisor", "pid": status.pid},
                    )
                )
            known_pids[slug] = status.pid
        if not status.needs_start(studio.playout_stale_seconds):
            continue
        if _waiting_for_earlier_run(context.instance, slug, now):
            continue
        config = {"ops": {ensure_channel_playout.name: {"config": {"channel": slug}}}}
        requests.append(dg.RunRequest(run_config=config, tags={CHANNEL_TAG: slug}))
    return dg.SensorResult(
        run_requests=requests,
        asset_events=observations,
        cursor=json.dumps(known_pids, sort_keys=True),
        skip_reason=None if requests else "every channel's playout is on air or stopped",
    )
