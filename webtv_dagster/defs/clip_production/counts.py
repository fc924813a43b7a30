"""What production has done, for the stack's metrics: each channel's clips made and failed per
stage, counted from Dagster's event log (read on from where the last tick stopped) into the
data folder, where `/metrics` reads them (stack/metrics.py: the watchdog that serves them runs
no Dagster)."""

import json
from datetime import UTC, datetime

import dagster as dg

from webtv_dagster.clips import ClipId
from webtv_dagster.defs.clip_production.assets import CLIP_STAGES
from webtv_dagster.lib.clip_steps import FAILED_CLIPS
from webtv_dagster.lib.resources import Studio
from webtv_dagster.stack.metrics import (
    PRODUCTION_OUTCOMES,
    ProductionCounts,
    write_production_counts,
)

# Materializations read per stage, and failed runs, a tick: a tick's cost stays the same
# however long the history (a backlog is read over the next ticks).
EVENTS_PER_TICK = 1000
RUNS_PER_TICK = 100


def _failed_clips(record: dg.EventLogRecord) -> tuple[str, list[str]]:
    """The step of a failure event, and the clips it names as failed (a clip step fails once
    every clip had its chance, naming those that failed; one that names none crashed)."""
    entry = record.event_log_entry
    user_failure = entry.dagster_event.step_failure_data.user_failure_data
    named = user_failure.metadata.get(FAILED_CLIPS) if user_failure else None
    return entry.step_key or "", list(named.value) if named is not None else []


def _count(counts: ProductionCounts, clip_key: str, stage: str, outcome: str) -> None:
    try:
        slug = ClipId.parse(clip_key).channel
    except ValueError:
        return  # not a clip's partition
    per_stage = counts.setdefault(slug, {}).setdefault(stage, {})
    per_stage[outcome] = per_stage.get(outcome, 0) + 1


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def production_counts_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> None:
    """Counts each channel's clip stages made (their materializations) and failed (the clips a
    failed step names: its last attempt, after its retries) since the last tick into the data
    folder (`webtv_clips_made_total`, `webtv_clips_failed_total`); the counts and where the
    reading stopped live in the cursor."""
    kept = json.loads(context.cursor) if context.cursor else {}
    counts: ProductionCounts = kept.get("counts", {})
    read_to: dict[str, str | float] = kept.get("read_to", {})
    instance = context.instance
    stages = [stage.key.path[-1] for stage in CLIP_STAGES]
    for slug in studio.slugs():
        for stage in stages:
            for outcome in PRODUCTION_OUTCOMES:
                counts.setdefault(slug, {}).setdefault(stage, {}).setdefault(outcome, 0)
    for stage in CLIP_STAGES:
        name = stage.key.path[-1]
        made = instance.fetch_materializations(
            stage.key, limit=EVENTS_PER_TICK, cursor=read_to.get(name), ascending=True
        )
        for record in made.records:
            _count(counts, record.partition_key or "", name, "made")
        if made.records:
            read_to[name] = made.cursor
    # Failures, from the clip runs that failed since the last tick (the event log of each:
    # Dagster's default storage keeps one per run), in the order they ended.
    after = read_to.get("failed_runs_after", 0.0)
    seen_at_after = set(kept.get("failed_runs_at_after", []))
    runs = instance.get_run_records(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(float(after), UTC) if after else None,
        ),
        limit=RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    for run in runs:
        if run.dagster_run.run_id in seen_at_after:
            continue
        for record in instance.get_records_for_run(
            run.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records:
            step, clip_keys = _failed_clips(record)
            if step in stages:
                for clip_key in clip_keys:
                    _count(counts, clip_key, step, "failed")
    if runs:
        last = runs[-1].update_timestamp.timestamp()
        if last != after:
            seen_at_after = set()
        read_to["failed_runs_after"] = last
        seen_at_after |= {
            r.dagster_run.run_id for r in runs if r.update_timestamp.timestamp() == last
        }
    write_production_counts(studio.data_folder, counts)
    context.update_cursor(
        json.dumps(
            {"counts": counts, "read_to": read_to, "failed_runs_at_after": sorted(seen_at_after)}
        )
    )
