"""Dagster's records of what is gone: when retention removes a clip's media, the clip's
partition and the runs that made it go too, so that Dagster's storage holds the clips whose media
exists plus a bounded window of everything else. Sensor and schedule ticks are purged by Dagster
itself (dagster.yaml `retention`); the runs of every other job and the observations of every
asset of the definitions here, after HISTORY_DAYS.

This is the one module that imports Dagster's private names, because Dagster OSS can delete a
run with its events, but not a run's asset check executions, nor runless events (what sensors
observe), and it deletes partitions one per call: those rows are deleted here from Dagster's
own tables, by the schema Dagster's storage uses, in the same way `delete_run` deletes a run's
events. A Dagster upgrade checks this module first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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

from webtv_dagster.lib.names import PARTITION, RANGE_END, RANGE_START
from webtv_dagster.lib.partitions import clip_keys_of_run, clip_partitions

HISTORY_DAYS = 7  # finished runs that no clip needs, and observations
CLIPS_PER_CHUNK = 500  # clips forgotten per round of queries (a SQL `IN (...)` each)
OLD_RUNS_PER_JOB = 1_000  # old runs looked at per job and call: a call's cost is bounded
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


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
    """Which of the clip partitions `keys` exist (a query per CLIPS_PER_CHUNK keys)."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return {key for key in keys if instance.has_dynamic_partition(clip_partitions.name, key)}
    existing: set[str] = set()
    for start in range(0, len(keys), CLIPS_PER_CHUNK):
        chunk = list(keys[start : start + CLIPS_PER_CHUNK])
        existing |= set(storage.get_existing_dynamic_partitions(clip_partitions.name, chunk))
    return existing


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


def clips_named_in_config(run_config: Mapping[str, Any]) -> list[str]:
    """The clips a run's op configuration names (`clip_id`: a take-down's, say)."""
    ops = run_config.get("ops", {}) if isinstance(run_config, Mapping) else {}
    configs = [op.get("config") for op in ops.values() if isinstance(op, Mapping)]
    return [c["clip_id"] for c in configs if isinstance(c, Mapping) and "clip_id" in c]


def forget_old_runs(instance: dg.DagsterInstance, now: float, job_names: Iterable[str]) -> int:
    """Deletes the finished runs of `job_names` (every job of the definitions: a job added later
    is never missed) older than HISTORY_DAYS that no clip needs: a run that made a clip or
    names one in its configuration (a take-down's) stays while that clip does, and goes with it
    (forget_clips). Looks at the oldest OLD_RUNS_PER_JOB of each job, so a call's cost does not
    grow with history. Returns how many runs were deleted."""
    before = datetime.fromtimestamp(now - HISTORY_DAYS * 86_400, tz=UTC)
    forgotten = 0
    for job_name in job_names:
        records = instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=FINISHED, created_before=before),
            limit=OLD_RUNS_PER_JOB,
            ascending=True,
        )
        needs = {
            record.dagster_run.run_id: clip_keys_of_run(record.dagster_run.tags)
            + clips_named_in_config(record.dagster_run.run_config)
            for record in records
        }
        existing = _existing_partitions(instance, sorted({k for ks in needs.values() for k in ks}))
        for run_id, clips in needs.items():
            if not existing.intersection(clips):
                forget_run(instance, run_id)
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
