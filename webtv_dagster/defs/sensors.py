"""Sensors: keep every channel's buffer of unaired clips full, and playlists current."""

import json
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field

from webtv_dagster.channels import Channel, load_channels
from webtv_dagster.clips import ClipId, clips_of_channel, next_clip_ids
from webtv_dagster.defs.assets.clips import broadcast_clip
from webtv_dagster.defs.jobs import clip_job, playlist_job
from webtv_dagster.defs.partitions import channel_partitions, clip_partitions
from webtv_dagster.instance import STOPPED_WITH_STACK_TAG
from webtv_dagster.planning import clips_needed, run_batches
from webtv_dagster.playout.state import read_state
from webtv_dagster.settings import Settings
from webtv_dagster.takedowns import TAKEN_DOWN

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def clip_run_request(channel: Channel, batch: list[ClipId]) -> dg.RunRequest:
    """A run for a batch of one channel's clips, tagged with the model each stage calls
    (`webtv/<family>_model`): dagster.yaml limits runs per remote model with these tags."""
    first, last = batch[0].key, batch[-1].key
    models = {f"webtv/{family}_model": name for family, name in channel.backends}
    return dg.RunRequest(
        run_key=f"clips:{first}..{last}",
        job_name=clip_job.name,
        tags={RANGE_START: first, RANGE_END: last, **models},
    )


def clip_statuses(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, Any]:
    """Each clip's broadcast_clip status: in progress (a run is planned or running),
    materialized or failed; clips no run ever targeted are absent."""
    statuses = instance.get_status_by_partition(broadcast_clip.key, keys, clip_partitions) or {}
    return {key: status for key, status in statuses.items() if status is not None}


def failed_clip_keys(instance: dg.DagsterInstance, keys: list[str]) -> set[str]:
    """Clips whose broadcast clip failed (or was never made because a stage before it failed)."""
    statuses = clip_statuses(instance, keys)
    return {key for key, status in statuses.items() if status == dg.AssetPartitionStatus.FAILED}


def taken_down_keys(instance: dg.DagsterInstance, keys: list[str]) -> set[str]:
    """Clips among `keys` whose latest observation is a take-down (take_down_job); they will
    not air, so they do not count as content ahead of air."""
    if not keys:
        return set()
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=broadcast_clip.key, asset_partitions=keys),
        limit=4 * len(keys),
    ).records  # newest first
    latest: dict[str, Any] = {}
    for record in records:
        latest.setdefault(record.partition_key, record.asset_observation.metadata.get("on_air"))
    return {key for key, on_air in latest.items() if on_air and on_air.value == TAKEN_DOWN}


REBOOK_OF = "webtv/rebook_of"  # on a run that makes again the clips of a canceled one


def rebook_requests(instance: dg.DagsterInstance) -> tuple[list[dg.RunRequest], set[str]]:
    """Runs for the clips of clip runs canceled by a stack stop (`webtv down`, Ctrl-C on
    `webtv up`) that were not booked again yet, and those clips' keys. Looks at the newest
    twenty such runs only: a tick's cost does not grow with history."""
    canceled = instance.get_run_records(
        dg.RunsFilter(
            job_name=clip_job.name,
            statuses=[dg.DagsterRunStatus.CANCELED],
            tags={STOPPED_WITH_STACK_TAG: "true"},
        ),
        limit=20,
    )
    requests, keys = [], set()
    for record in canceled:
        run = record.dagster_run
        if instance.get_run_records(dg.RunsFilter(tags={REBOOK_OF: run.run_id}), limit=1):
            continue
        first, last = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
        if not first or not last:
            continue
        models = {key: value for key, value in run.tags.items() if key.endswith("_model")}
        requests.append(
            dg.RunRequest(
                run_key=f"rebook:{run.run_id}",
                job_name=clip_job.name,
                tags={RANGE_START: first, RANGE_END: last, REBOOK_OF: run.run_id, **models},
            )
        )
        start, end = ClipId.parse(first), ClipId.parse(last)
        numbers = range(start.number, end.number + 1)
        keys |= {ClipId(channel=start.channel, number=number).key for number in numbers}
    return requests, keys


class ChannelCursor(BaseModel):
    requested: int = Field(0, description="every clip up to here was requested or booked")
    seen: int = Field(0, description="every clip up to here existed at the last tick")


@dg.sensor(
    job=clip_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def clip_production_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Plans clips until each channel has `ahead_seconds` of unaired content, and requests a
    run for every clip partition added since (by this sensor, a schedule, the add_clips job or
    the UI) that nobody has booked yet, in batches of WEBTV_CLIPS_PER_RUN. A new clip waits one
    tick before it is requested: a schedule adds its clips and books their runs in one go, so by
    the next tick its clips show as booked and are left alone; no clip is ever booked twice.

    Every planned clip that has neither aired nor failed counts as unaired: what has aired comes
    from the channel's playout state (`webtv playout`; without one, nothing has), and failed
    clips stay for an operator to rerun while new ones take their place in the buffer."""
    settings = Settings.from_env()
    cursors = {
        slug: ChannelCursor.model_validate(value)
        for slug, value in (json.loads(context.cursor) if context.cursor else {}).items()
    }
    existing = context.instance.get_dynamic_partitions(clip_partitions.name)
    statuses = clip_statuses(context.instance, list(existing))
    run_requests, rebooked = rebook_requests(context.instance)
    failed = {
        key
        for key, status in statuses.items()
        if status == dg.AssetPartitionStatus.FAILED and key not in rebooked
    }
    new_keys: list[str] = []
    for channel in load_channels(settings.channels_file).channels:
        planned = clips_of_channel(existing, channel.slug)
        if channel.slug not in cursors:
            # First sight of the channel: clips some run already targeted were booked before.
            booked = [clip.number for clip in planned if clip.key in statuses]
            cursors[channel.slug] = ChannelCursor(requested=max(booked, default=0))
        cursor = cursors[channel.slug]
        state = read_state(settings.data_dir, channel.slug)
        aired_through = state.aired_through if state else 0
        ahead = [c for c in planned if c.key not in failed and c.number > aired_through]
        pulled = taken_down_keys(context.instance, [c.key for c in ahead])
        unaired = [c for c in ahead if c.key not in pulled]
        added = next_clip_ids(existing, channel.slug, clips_needed(channel, len(unaired)))
        new_keys += [clip.key for clip in added]
        due = [
            clip
            for clip in planned
            if cursor.requested < clip.number <= cursor.seen and clip.key not in statuses
        ]
        for batch in run_batches(due, settings.clips_per_run):
            run_requests.append(clip_run_request(channel, batch))
        cursor.requested = max(cursor.requested, cursor.seen)
        cursor.seen = max([cursor.seen, *(clip.number for clip in planned + added)])
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[clip_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=json.dumps({slug: c.model_dump() for slug, c in cursors.items()}, sort_keys=True),
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
        dg.AssetRecordsFilter(asset_key=broadcast_clip.key, after_storage_id=after),
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
    known = set(channel_partitions.get_partition_keys())
    run_requests = [
        dg.RunRequest(run_key=f"playlist:{slug}@{storage_id}", partition_key=slug)
        for slug, storage_id in sorted(latest.items())
        if slug in known
    ]
    return dg.SensorResult(run_requests=run_requests, cursor=str(result.records[-1].storage_id))
