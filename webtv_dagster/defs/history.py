"""Dagster's records of what is gone: when retention removes a clip's media, the clip's
partition and the runs that made it go too, so that Dagster's storage holds the clips whose media
exists plus a bounded window of everything else. Sensor and schedule ticks are purged by Dagster
itself (dagster.yaml `retention`); other runs and the on-air observations here, after
HISTORY_DAYS.

Dagster OSS can delete a run with its events, but not a run's asset check executions, nor runless
events (what sensors observe), and it deletes partitions one per call: those rows are deleted
here from Dagster's own tables, by the schema Dagster's storage uses, in the same way
`delete_run` deletes a run's events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import dagster as dg
from dagster._core.instance.utils import RUNLESS_RUN_ID
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    DynamicPartitionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_select

from webtv_dagster.defs.partitions import (
    PARTITION,
    RANGE_END,
    RANGE_START,
    clip_keys_of_run,
    clip_partitions,
)

HISTORY_DAYS = 7  # finished runs that made no clip, and on-air observations
CLIPS_PER_CHUNK = 500  # clips forgotten per round of queries (a SQL `IN (...)` each)
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# Runs that make no clip, kept HISTORY_DAYS; clip runs go with their clips.
HOUSEKEEPING_JOBS = ["playlist_job", "retention_job", "add_clips_job", "playout_job"]


def forget_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Deletes a finished run with everything Dagster stored for it: its events (asset events
    included), its asset check executions and its captured logs."""
    instance.delete_run(run_id)
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage) and storage.has_table("asset_check_executions"):
        with storage.index_connection() as connection:
            connection.execute(
                AssetCheckExecutionsTable.delete().where(
                    AssetCheckExecutionsTable.c.run_id == run_id
                )
            )
    with contextlib.suppress(NotImplementedError):
        instance.compute_log_manager.delete_logs(prefix=[run_id])


def _delete_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> None:
    """One statement for a chunk of clip partitions (Dagster deletes one per call)."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        for key in keys:
            instance.delete_dynamic_partition(clip_partitions.name, key)
        return
    table = DynamicPartitionsTable
    with storage.index_connection() as connection:
        connection.execute(
            table.delete().where(
                (table.c.partitions_def_name == clip_partitions.name)
                & table.c.partition.in_(list(keys))
            )
        )


def _existing_partitions(instance: dg.DagsterInstance, keys: Sequence[str]) -> set[str]:
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        return set(storage.get_existing_dynamic_partitions(clip_partitions.name, keys))
    return {key for key in keys if instance.has_dynamic_partition(clip_partitions.name, key)}


def forget_clips(instance: dg.DagsterInstance, keys: Sequence[str]) -> int:
    """Deletes the clips' partitions, then every finished run whose clips are all gone (a run
    that also made a clip that still exists stays, for that clip's lineage). Works a chunk of
    clips at a time: a few queries per chunk, then one `delete_run` per run. Returns how many
    runs were deleted."""
    forgotten = 0
    for start in range(0, len(keys), CLIPS_PER_CHUNK):
        chunk = list(keys[start : start + CLIPS_PER_CHUNK])
        _delete_partitions(instance, chunk)
        runs: dict[str, dg.DagsterRun] = {}
        for tag in (RANGE_START, RANGE_END, PARTITION):
            for record in instance.get_run_records(
                dg.RunsFilter(tags={tag: chunk}, statuses=FINISHED)
            ):
                runs[record.dagster_run.run_id] = record.dagster_run
        made = {run_id: clip_keys_of_run(run.tags) for run_id, run in runs.items()}
        existing = _existing_partitions(instance, sorted({k for ks in made.values() for k in ks}))
        for run_id, clip_keys in made.items():
            if not existing.intersection(clip_keys):
                forget_run(instance, run_id)
                forgotten += 1
    return forgotten


def _older_runs(instance: dg.DagsterInstance, job_names: Iterable[str], before: datetime):
    for job_name in job_names:
        yield from instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=FINISHED, created_before=before),
            limit=10_000,
        )


def forget_old_runs(instance: dg.DagsterInstance, now: float) -> int:
    """Deletes the finished runs older than HISTORY_DAYS that made no clip (playlists,
    retention, added clips, playout restarts), and take-downs of clips that are gone. Returns
    how many runs were deleted."""
    before = datetime.fromtimestamp(now - HISTORY_DAYS * 86_400, tz=UTC)
    forgotten = 0
    for record in _older_runs(instance, HOUSEKEEPING_JOBS, before):
        forget_run(instance, record.dagster_run.run_id)
        forgotten += 1
    for record in _older_runs(instance, ["take_down_job"], before):
        config = record.dagster_run.run_config.get("ops", {}).get("take_down_clip", {})
        clip_id = config.get("config", {}).get("clip_id", "")
        if not instance.has_dynamic_partition(clip_partitions.name, clip_id):
            forget_run(instance, record.dagster_run.run_id)
            forgotten += 1
    return forgotten


def forget_old_observations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, now: float
) -> int:
    """Deletes the asset's runless events (what sensors observed) older than HISTORY_DAYS.
    Returns how many were deleted."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return 0
    before = datetime.fromtimestamp(now - HISTORY_DAYS * 86_400, tz=UTC).replace(tzinfo=None)
    table = SqlEventLogStorageTable
    old = (
        (table.c.run_id == RUNLESS_RUN_ID)
        & (table.c.asset_key == asset_key.to_string())
        & (table.c.timestamp < before)
    )
    deleted = 0
    # SQLite keeps runless events in a shard of their own and an index; Postgres in one table.
    for connect in (lambda: storage.run_connection(RUNLESS_RUN_ID), storage.index_connection):
        with connect() as connection:
            ids = [row[0] for row in connection.execute(db_select([table.c.id]).where(old))]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                connection.execute(table.delete().where(table.c.id.in_(chunk)))
                connection.execute(
                    AssetEventTagsTable.delete().where(AssetEventTagsTable.c.event_id.in_(chunk))
                )
            deleted = max(deleted, len(ids))
    return deleted
