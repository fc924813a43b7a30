"""What Dagster's storage says about a channel's clips, read so that no tick's cost grows with
history: partitions are read from a position onwards (or newest first), and clip statuses only
for the clips that can still matter, which the planner keeps to a bounded window past air.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from enum import StrEnum

import dagster as dg

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId, clips_of_channel
from webtv_dagster.lib.clip_steps import FAILED_CLIPS
from webtv_dagster.lib.names import BROADCAST_CLIP
from webtv_dagster.lib.partitions import clip_keys_of_run, clip_partitions
from webtv_dagster.playout.takedowns import TAKEN_DOWN
from webtv_dagster.production.planning import MAX_BACKLOG_CLIPS, BacklogFull

PARTITION_PAGE = 10_000
KEYS_PER_QUERY = 500  # partition keys in one SQL `IN (...)`


def added_partitions(
    instance: dg.DagsterInstance, position: str | None
) -> tuple[list[str], str | None]:
    """Clip partitions added since `position` (a place in Dagster's partition table; None: the
    start), oldest first, and the position after them."""
    keys: list[str] = []
    while True:
        page = instance.get_paginated_dynamic_partitions(
            clip_partitions.name, limit=PARTITION_PAGE, ascending=True, cursor=position
        )
        keys += page.results
        position = page.cursor
        if not page.has_more:
            return keys, position


def latest_clip_number(instance: dg.DagsterInstance, slug: str) -> int:
    """The channel's highest clip number (0 before its first clip). Clips are only ever added
    after the channel's highest, so it is the channel's most recently added partition: read
    newest first, a page at a time, it is found within the first page of an active channel."""
    position = None
    while True:
        page = instance.get_paginated_dynamic_partitions(
            clip_partitions.name, limit=1_000, ascending=False, cursor=position
        )
        numbers = [clip.number for clip in clips_of_channel(page.results, slug)]
        if numbers:
            return max(numbers)
        if not page.has_more:
            return 0
        position = page.cursor


def add_clips(
    instance: dg.DagsterInstance, channel: Channel, count: int, aired_through: int
) -> list[ClipId]:
    """Adds `count` clips after the channel's highest, refusing to take its backlog (clips past
    air: made, in flight or planned) beyond MAX_BACKLOG_CLIPS."""
    highest = latest_clip_number(instance, channel.slug)
    backlog = highest - min(aired_through, highest)
    if backlog + count > MAX_BACKLOG_CLIPS:
        raise BacklogFull(
            f"{channel.slug} already has {backlog} clip(s) past air; adding {count} would pass "
            f"the cap of {MAX_BACKLOG_CLIPS}: add at most {max(0, MAX_BACKLOG_CLIPS - backlog)}, "
            "or let the playout air some first"
        )
    added = [ClipId(channel=channel.slug, number=highest + n) for n in range(1, count + 1)]
    instance.add_dynamic_partitions(clip_partitions.name, [clip.key for clip in added])
    return added


class ClipStatus(StrEnum):
    IN_PROGRESS = "in progress"  # a run that will make it is planned or running
    MATERIALIZED = "materialized"
    FAILED = "failed"  # its last run ended without making it


def _latest_storage_ids(
    instance: dg.DagsterInstance, event_type: dg.DagsterEventType, keys: Sequence[str]
) -> dict[str, int]:
    """The storage id of each partition's newest event of this type, among `keys` (one grouped
    query per KEYS_PER_QUERY keys)."""
    latest: dict[str, int] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        latest |= instance.get_latest_storage_id_by_partition(
            BROADCAST_CLIP, event_type, set(keys[start : start + KEYS_PER_QUERY])
        )
    return latest


def clip_statuses(instance: dg.DagsterInstance, keys: Sequence[str]) -> dict[str, ClipStatus]:
    """The broadcast clip status of each of `keys` that a run ever targeted: the newest of its
    planned, made and failed events decides; planned in a run that has ended means failed."""
    newest: dict[str, tuple[int, ClipStatus]] = {}
    for event_type, status in [
        (dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, ClipStatus.IN_PROGRESS),
        (dg.DagsterEventType.ASSET_MATERIALIZATION, ClipStatus.MATERIALIZED),
        (dg.DagsterEventType.ASSET_FAILED_TO_MATERIALIZE, ClipStatus.FAILED),
    ]:
        for key, storage_id in _latest_storage_ids(instance, event_type, keys).items():
            if storage_id > newest.get(key, (-1,))[0]:
                newest[key] = (storage_id, status)
    statuses = {key: status for key, (_, status) in newest.items()}
    # In flight are the few clips of the runs now running: one look at each of their runs.
    for key in [key for key, status in statuses.items() if status == ClipStatus.IN_PROGRESS]:
        planned = instance.get_latest_planned_materialization_info(BROADCAST_CLIP, key)
        run = instance.get_run_by_id(planned.run_id) if planned else None
        if run is None or run.is_finished:
            statuses[key] = ClipStatus.FAILED
    return statuses


def taken_down_keys(instance: dg.DagsterInstance, keys: Sequence[str]) -> set[str]:
    """Clips among `keys` whose latest observation is a take-down (take_down_job); they will
    not air, so they do not count as content ahead of air."""
    latest = _latest_storage_ids(instance, dg.DagsterEventType.ASSET_OBSERVATION, keys)
    storage_ids = sorted(latest.values())
    taken_down = set()
    for start in range(0, len(storage_ids), KEYS_PER_QUERY):
        chunk = storage_ids[start : start + KEYS_PER_QUERY]
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=BROADCAST_CLIP, storage_ids=chunk),
            limit=len(chunk),
        ).records
        for record in records:
            on_air = record.asset_observation.metadata.get("on_air")
            if on_air and on_air.value == TAKEN_DOWN:
                taken_down.add(record.partition_key)
    return taken_down


def unfinished_clips(
    instance: dg.DagsterInstance, run: dg.DagsterRun, stages: Sequence[dg.AssetKey]
) -> dict[str, list[dg.AssetKey]]:
    """For each clip of an ended clip run that no stage failed, the stages (of `stages`, in
    order) the run did not make it: a clip's failure fails its step, which stops the later
    stages of its batch-mates too, and this is what they still need. In a failed run, a step
    that failed without naming its clips (a crash, a fault of the whole stage) counts as
    failing them all; in a canceled one, that is the cancel stopping the step."""
    clips = clip_keys_of_run(run.tags)
    failed: set[str] = set()
    failures = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    ).records
    if run.status == dg.DagsterRunStatus.FAILURE and not failures:
        return {}  # the run itself failed (its process killed, its launch refused)
    for record in failures:
        user_failure = record.event_log_entry.dagster_event.step_failure_data.user_failure_data
        named = user_failure.metadata.get(FAILED_CLIPS) if user_failure else None
        if named is not None:
            failed |= set(named.value)
        elif run.status == dg.DagsterRunStatus.FAILURE:
            return {}
    made: dict[str, set[dg.AssetKey]] = defaultdict(set)
    materializations = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in materializations:
        materialization = record.event_log_entry.asset_materialization
        if materialization and materialization.partition:
            made[materialization.partition].add(materialization.asset_key)
    return {
        key: [stage for stage in stages if stage not in made[key]]
        for key in clips
        if key not in failed
    }
