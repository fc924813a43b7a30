"""A month of one channel, and a week of ten, in a real Dagster instance: the clip sensor's tick,
Dagster's storage and the UI's queries while clips accumulate and retention runs (issue 10).

Real: PostgreSQL and SeaweedFS; one clip_job run of --clips-per-run clips of the demo channel
(8 s clips) made with the offline backends (in-process), one playlist_job run and one on-air
observation of on_air_stream_sensor: Dagster's bytes and the S3 bytes per clip are measured on
them (the S3 bytes kept once retention's own code removed the intermediates); every clip
partition of every simulated day (10,800 a day per channel of 8 s clips); the clip sensor,
ticked on that database by an instance that, like the daemon's, opens a connection per query;
retention's Dagster side at the end of each simulated day (clips_to_remove by the channel's
policy, forget_clips, forget_old_runs, forget_old_observations); dagster-webserver answering
the GraphQL queries behind the asset and partitions pages of broadcast_clip.

Synthetic: time (the playout state is written so that air advances; retention is given the
simulated time); every other run: copies of the real runs' stored events under new run ids,
clip keys and timestamps, for --materialized-per-day clips a day per channel, evenly spread
(each event is a database write: all 10,800 would take hours), with one playlist run per clip
run and the on-air observations (one every 30 s) scaled alike, written through a pooled
connection; their clips have no media (the S3 side of retention is measured on the real clips
only). forget_clips is timed on a sample each day (whole runs and as many clips never made);
the rest of the day's clips go through it on the pooled connection, and the partitions of
clips never made (which have no run to look for) in one statement per 10,000. The daemon's
own ticks and their purge are not simulated.

Each day prints the row counts (the flatness signal: the database file only grows until
VACUUM lets deleted rows' space be reused; it runs once a simulated day unless --no-vacuum),
the database size, the tick that reads the day's 10,800 partitions at once (an artefact of
adding a day at once) and steady ticks 15 s apart (two clips aired between two ticks). At the
end of each run: a tick without a cursor (reading every partition), steady ticks, and the
GraphQL queries; again with a broadcast_clip materialization for every clip held (--materialize-
held); and again with the partitions retention removed added back (retention off).

Usage: .venv/bin/python benchmarks/month.py [--quick] [--days 30] [--channels 10]
           [--channel-days 7] [--clips-per-day 10800] [--materialized-per-day 30]
           [--keep-days 2] [--materialize-held one] [--no-vacuum]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psycopg2
import yaml
from dagster._core.events.log import EventLogEntry
from dagster._core.snap import JobSnap
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._serdes import deserialize_value, serialize_value
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, Channel, load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, ScheduledClip, write_state
from webtv_dagster.production.retention import (
    StoredClip,
    clips_to_remove,
    intermediates_to_remove,
    remove_intermediates,
    stored_clips,
)
from webtv_dagster.settings import Settings
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster.stack.instance import write_instance_yaml
from webtv_dagster_tests.servers import (
    free_port_block,
    running_postgres,
    start_embedded_s3,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = 86_400
PARTITION_BATCH = 10_000
S3_KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
TABLES = [
    "dynamic_partitions",
    "runs",
    "run_tags",
    "event_logs",
    "asset_event_tags",
    "asset_check_executions",
]


def slugs(count: int) -> list[str]:
    return [f"month-{number:02d}" for number in range(1, count + 1)]


def write_channels_file(path: Path, count: int, keep_days: float) -> list[Channel]:
    """The demo channel `count` times over (its 8 s clips, its buffer), each keeping its clips
    `keep_days` by a retention policy; returns the channels as loaded."""
    document = yaml.safe_load(DEFAULT_CHANNELS_FILE.read_text())
    demo = document["channels"][0]
    document["channels"] = [
        {**demo, "slug": slug, "seed": index, "retention": {"keep_days": keep_days}}
        for index, slug in enumerate(slugs(count), start=1)
    ]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_channels(path).channels


class Database:
    """A database of the benchmark's PostgreSQL, measured through a connection of its own."""

    def __init__(self, postgres: dict[str, str], name: str):
        self.env = {**postgres, "DAGSTER_PG_DB": name}
        self.connection = self._connect("dagster")
        self.connection.cursor().execute(f"CREATE DATABASE {name}")
        self.connection.close()
        self.connection = self._connect(name)

    def _connect(self, name: str):
        connection = psycopg2.connect(
            host="127.0.0.1", port=int(self.env["DAGSTER_PG_PORT"]), user="dagster", dbname=name
        )
        connection.autocommit = True
        return connection

    def value(self, sql: str, arguments: tuple = ()) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, arguments)
            return int(cursor.fetchone()[0] or 0)

    def size(self) -> int:
        return self.value("SELECT pg_database_size(current_database())")

    def rows(self) -> dict[str, int]:
        return {table: self.value(f"SELECT count(*) FROM {table}") for table in TABLES}

    def table_bytes(self) -> dict[str, int]:
        """Each table's bytes with its indexes and TOAST."""
        return {
            table: self.value("SELECT pg_total_relation_size(%s)", (table,)) for table in TABLES
        }

    def run_row_bytes(self, run_id: str) -> dict[str, int]:
        """The bytes of a run's rows in each table (row data, without indexes)."""
        by_run = "SELECT sum(pg_column_size(t.*)) FROM {} t WHERE run_id = %s"
        rows = {
            table: self.value(by_run.format(table), (run_id,))
            for table in ["runs", "run_tags", "event_logs", "asset_check_executions"]
        }
        rows["asset_event_tags"] = self.value(
            "SELECT sum(pg_column_size(t.*)) FROM asset_event_tags t JOIN event_logs e "
            "ON t.event_id = e.id WHERE e.run_id = %s",
            (run_id,),
        )
        return rows

    def event_bytes_by_type(self, run_id: str) -> dict[str, tuple[int, int]]:
        """A run's event rows by event type: (count, bytes of row data)."""
        cursor = self.connection.cursor()
        cursor.execute(
            "SELECT coalesce(dagster_event_type, 'log message'), count(*), "
            "sum(pg_column_size(t.*)) FROM event_logs t WHERE run_id = %s GROUP BY 1 "
            "ORDER BY 3 DESC",
            (run_id,),
        )
        return {kind: (count, size) for kind, count, size in cursor.fetchall()}

    def vacuum(self) -> None:
        """What autovacuum does over a real day: deleted rows' space becomes reusable."""
        self.connection.cursor().execute("VACUUM (ANALYZE)")

    def instance(self, home: Path) -> dg.DagsterInstance:
        os.environ.update(self.env)  # dagster.yaml reads the connection from the environment
        write_instance_yaml(home, postgres=True)
        return dg.DagsterInstance.from_config(str(home))


@dataclass
class Template:
    """A stored run (None: runless events) and its events, serialized, to be copied with other
    run ids, clip keys and times: each event is stored again through the instance, as a run
    would store it."""

    run: str | None
    events: list[tuple[float, str]]  # seconds after the first event, serialized entry
    run_id: str
    keys: list[str] = field(default_factory=list)  # the clip keys it made, in order
    slug: str = ""

    @classmethod
    def of_run(cls, instance: dg.DagsterInstance, run_id: str, keys: list[str], slug: str):
        records = instance.event_log_storage.get_records_for_run(run_id, limit=100_000).records
        return cls.of_entries(
            serialize_value(instance.get_run_by_id(run_id)),
            [record.event_log_entry for record in records],
            run_id,
            keys,
            slug,
        )

    @classmethod
    def of_entries(cls, run, entries, run_id: str, keys: list[str], slug: str) -> Template:
        first = min(entry.timestamp for entry in entries)
        events = [(entry.timestamp - first, serialize_value(entry)) for entry in entries]
        return cls(run=run, events=events, run_id=run_id, keys=keys, slug=slug)

    def copy(self, instance: dg.DagsterInstance, slug: str, keys: list[str], start: float) -> int:
        """Stores a copy for channel `slug` and clips `keys` that began at `start`, one event
        at a time as a run stores them; returns how many events it stored."""
        run_id = str(uuid.uuid4())
        rewritten = self.rewriter(slug, keys, run_id)
        if self.run:
            run = deserialize_value(rewritten(self.run), dg.DagsterRun)
            instance.run_storage.add_historical_run(run, datetime.fromtimestamp(start, UTC))
        for offset, text in self.events:
            entry = deserialize_value(rewritten(text), EventLogEntry)
            instance.handle_new_event(entry._replace(timestamp=start + offset))
        return len(self.events)

    def entries(self, slug: str, keys: list[str], run_id: str, at: float) -> list[EventLogEntry]:
        """The events of a copy, not stored."""
        rewritten = self.rewriter(slug, keys, run_id)
        return [
            deserialize_value(rewritten(text), EventLogEntry)._replace(timestamp=at + offset)
            for offset, text in self.events
        ]

    def rewriter(self, slug: str, keys: list[str], run_id: str):
        """Replaces the template's run id (a runless event keeps its own), clip keys and channel
        in serialized text."""
        replacements = {self.run_id: run_id} if self.run_id else {}
        replacements |= dict(zip(self.keys, keys, strict=True))
        replacements |= {f'"{self.slug}"': f'"{slug}"', f"/{self.slug}/": f"/{slug}/"}
        pattern = re.compile("|".join(map(re.escape, sorted(replacements, key=len)[::-1])))
        return lambda text: pattern.sub(lambda match: replacements[match.group(0)], text)


@dataclass
class RealFigures:
    seconds: float
    clips: int
    events: int
    row_bytes: dict[str, int]  # the run's rows in each table, without indexes
    event_bytes: dict[str, tuple[int, int]]  # the run's events by type: count, bytes
    s3_made: int
    s3_kept: int


@dataclass
class Templates:
    clip_run: Template
    playlist_run: Template
    observation: Template
    snapshots: list  # the job and execution plan snapshots the runs point at
    prompt: str
    clip_seconds: float  # how long the real clip run took
    observe_seconds: float  # between two on-air observations
    kept_bytes: int  # S3 bytes of a clip kept (its intermediates removed)
    broadcast: Template  # one broadcast_clip materialization of the real run


def air_state(channel: Channel, aired_through: int, now: float, prompt: str) -> PlayoutState:
    """The playout state of a channel airing clip `aired_through` at `now`."""
    clip = ClipId(channel=channel.slug, number=max(1, aired_through)).key
    on_air = ScheduledClip(
        clip_id=clip,
        prompt=prompt,
        duration_seconds=channel.clip_seconds,
        starts_at=now - 1,
        stream_seconds=0,
    )
    return PlayoutState(
        channel=channel.slug,
        title=channel.title,
        publisher_started_at=now - DAY,
        updated_at=now,
        aired_through=aired_through,
        unplayed_seconds=channel.ahead_seconds,
        schedule=[on_air],
        up_next=[],
    )


def write_air_state(data_dir: Path, state: PlayoutState) -> None:
    PlayoutFolder.of(data_dir, state.channel).path.mkdir(parents=True, exist_ok=True)
    write_state(data_dir, state)


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def measure_real_clips(
    database: Database, home: Path, s3_url: str, channel: Channel, clips: int, data_dir: Path
) -> tuple[RealFigures, Templates]:
    """Makes `clips` clips in one clip_job run as the sensor requests it, then a playlist run
    and an on-air observation; measures what Dagster and S3 keep of them."""
    from webtv_dagster.defs.air.on_air import on_air_stream, on_air_stream_sensor
    from webtv_dagster.defs.air.playlist import playlist_job
    from webtv_dagster.defs.clip_production.assets import broadcast_clip, clip_job
    from webtv_dagster.defs.clip_production.sensor import clip_run_request
    from webtv_dagster.lib.partitions import clip_partitions
    from webtv_dagster.lib.resources import S3MediaStorage, Studio

    store = MediaStore(
        bucket="media",
        endpoint_url=s3_url,
        region="us-east-1",
        access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    resources = {
        "media_storage": S3MediaStorage(
            public_url="http://127.0.0.1:8080",
            endpoint_url=s3_url,
            bucket="media",
            **{k.lower(): v for k, v in S3_KEYS.items()},
        ),
        "studio": Studio.from_settings(Settings.from_env()),
    }
    batch = [ClipId(channel=channel.slug, number=n) for n in range(1, clips + 1)]
    keys = [clip.key for clip in batch]
    with database.instance(home) as instance:
        instance.add_dynamic_partitions(clip_partitions.name, keys)
        tags = clip_run_request(channel, batch, time.time()).tags
        started = time.monotonic()
        result = _resolved(clip_job).execute_in_process(
            instance=instance, tags=tags, resources=resources, run_config=QUIET
        )
        seconds = time.monotonic() - started
        if not result.success:
            raise SystemExit("the real clip run failed: see its log above")
        prompt = instance.fetch_materializations(broadcast_clip.key, limit=1).records[0]
        prompt = prompt.asset_materialization.metadata["prompt"].value
        events = len(instance.all_logs(result.run_id))
        row_bytes = database.run_row_bytes(result.run_id)
        event_bytes = database.event_bytes_by_type(result.run_id)
        playlist = _resolved(playlist_job).execute_in_process(
            instance=instance, partition_key=channel.slug, resources=resources, run_config=QUIET
        )
        write_air_state(data_dir, air_state(channel, clips, time.time(), prompt))
        sensed = on_air_stream_sensor(
            dg.build_sensor_context(instance=instance, resources={"studio": resources["studio"]})
        )
        for event in sensed.asset_events:
            instance.report_runless_asset_event(event)
        observed = instance.fetch_observations(on_air_stream.key, limit=1).records[0]
        templates = Templates(
            clip_run=Template.of_run(instance, result.run_id, keys, channel.slug),
            playlist_run=Template.of_run(instance, playlist.run_id, [], channel.slug),
            observation=Template.of_entries(None, [observed.event_log_entry], "", [], channel.slug),
            broadcast=broadcast_template(instance, result.run_id, channel.slug),
            snapshots=_snapshots(instance, [result.run_id, playlist.run_id]),
            prompt=prompt,
            clip_seconds=seconds,
            observe_seconds=on_air_stream_sensor.minimum_interval_seconds,
            kept_bytes=0,
        )
    made = sum(clip.size_bytes for clip in stored_clips(store, channel.slug))
    # Intermediates go keep_intermediates_hours after QC: retention's code, a day later.
    later = time.time() + (channel.retention.keep_intermediates_hours + 1) * 3_600
    for clip in intermediates_to_remove(
        stored_clips(store, channel.slug), channel.retention, later
    ):
        remove_intermediates(store, clip)
    kept = sum(clip.size_bytes for clip in stored_clips(store, channel.slug))
    figures = RealFigures(
        seconds=seconds,
        clips=clips,
        events=events,
        row_bytes=row_bytes,
        event_bytes=event_bytes,
        s3_made=made,
        s3_kept=kept,
    )
    templates.kept_bytes = kept // clips
    return figures, templates


def broadcast_template(instance: dg.DagsterInstance, run_id: str, slug: str) -> Template:
    from webtv_dagster.defs.clip_production.assets import broadcast_clip

    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=broadcast_clip.key), limit=1
    ).records[0]
    entry = record.event_log_entry
    return Template.of_entries(None, [entry], run_id, [record.partition_key], slug)


def _resolved(job):
    from webtv_dagster.definitions import defs

    return defs.resolve_job_def(job.name)


def _snapshots(instance: dg.DagsterInstance, run_ids: list[str]) -> list:
    storage = instance.run_storage
    snapshots = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        snapshots.append(storage.get_job_snapshot(run.job_snapshot_id))
        snapshots.append(storage.get_execution_plan_snapshot(run.execution_plan_snapshot_id))
    return snapshots


@dataclass
class Air:
    """Where a channel stands: the clips Dagster holds (lowest..highest), what aired, and the
    first clip of each of its runs still held."""

    channel: Channel
    lowest: int = 1
    highest: int = 0
    aired_through: int = 0
    runs: list[int] = field(default_factory=list)


@dataclass
class Retention:
    """One day's retention on the Dagster side: what went, and forget_clips timed on a sample
    on an instance that opens a connection per query (as a retention_job run's does)."""

    removed: int = 0
    runs: int = 0  # clip runs deleted
    sample_made: int = 0  # clips made (their runs deleted with them) in the timed sample
    made_seconds: float = 0.0
    sample_unmade: int = 0  # clips never made (a partition only) in the timed sample
    unmade_seconds: float = 0.0
    old_runs: int = 0  # housekeeping runs older than HISTORY_DAYS
    old_observations: int = 0
    old_seconds: float = 0.0


@dataclass
class Day:
    day: int
    rows: dict[str, int]
    size: int
    catch_up_tick: float
    steady_ticks: list[float]
    retention: Retention
    events: int
    write_seconds: float


class Simulation:
    """Simulated days of some channels on one database. Each day adds the day's clip partitions,
    copies of the real runs for the clips made, on-air observations, and moves the playout
    state on; then the sensor ticks and retention runs at the simulated time.

    Two instances share the database: `instance` is as the daemon and run workers have it (a
    new connection for each query: Dagster's Postgres storage outside the webserver) and runs
    what is measured; `writer` holds a pooled connection (as the webserver's does) and writes
    the synthetic history, which would take hours otherwise."""

    def __init__(self, instance, writer, templates: Templates, channels, args, start: float):
        self.instance = instance
        self.writer = writer
        self.templates = templates
        self.args = args
        self.air = {channel.slug: Air(channel) for channel in channels}
        self.start = start  # clip 1 of each channel airs then
        self.spacing = DAY / args.clips_per_day  # between two clips' air times
        self.per_run = len(templates.clip_run.keys)
        self.cursor: str | None = None
        self.materialized: str | None = None  # the newest clip made, for the partition page

    def air_time(self, number: int) -> float:
        return self.start + (number - 1) * self.spacing

    def day_end(self, day: int) -> float:
        return self.start + (day + 1) * DAY

    def add_partitions(self, slug: str, numbers: range) -> None:
        from webtv_dagster.lib.partitions import clip_partitions

        for offset in range(0, len(numbers), PARTITION_BATCH):
            keys = [key(slug, n) for n in numbers[offset : offset + PARTITION_BATCH]]
            self.writer.add_dynamic_partitions(clip_partitions.name, keys)

    def add_day(self, day: int) -> int:
        """The day's clips (every partition; the clips made, evenly spread) and observations;
        returns how many events were stored."""
        per_day, made = self.args.clips_per_day, self.args.materialized_per_day
        templates, events = self.templates, 0
        for air in self.air.values():
            channel, target = air.channel, (day + 1) * per_day
            self.add_partitions(channel.slug, range(air.highest + 1, target + 1))
            air.highest = max(air.highest, target)
            runs = made // self.per_run
            for index in range(runs):
                first = day * per_day + 1 + index * per_day // runs
                keys = [key(channel.slug, first + n) for n in range(self.per_run)]
                started = self.air_time(first) - channel.ahead_seconds
                events += templates.clip_run.copy(self.writer, channel.slug, keys, started)
                events += templates.playlist_run.copy(
                    self.writer, channel.slug, [], started + templates.clip_seconds
                )
                air.runs.append(first)
                self.materialized = keys[-1]
            observations = round(DAY / templates.observe_seconds * made / per_day)
            for index in range(observations):
                at = self.start + day * DAY + index * DAY / observations
                events += templates.observation.copy(self.writer, channel.slug, [], at)
            air.aired_through = target - round(channel.ahead_seconds / channel.clip_seconds)
            self.write_air(air, self.day_end(day))
        return events

    def write_air(self, air: Air, now: float) -> None:
        state = air_state(air.channel, air.aired_through, now, self.templates.prompt)
        write_air_state(self.args.data_dir, state)

    def tick(self, fresh: bool = False) -> float:
        """One evaluation of the clip sensor (timed), its new partitions then added as the
        daemon does; `fresh` starts from no cursor (a first tick over the whole history)."""
        from webtv_dagster.defs.clip_production.sensor import clip_production_sensor
        from webtv_dagster.lib.resources import Studio

        cursor = None if fresh else self.cursor
        studio = Studio.from_settings(Settings.from_env())
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources={"studio": studio}
        )
        started = time.perf_counter()
        result = clip_production_sensor(context)
        seconds = time.perf_counter() - started
        for request in result.dynamic_partitions_requests:
            keys = list(request.partition_keys)
            self.writer.add_dynamic_partitions(request.partitions_def_name, keys)
            if request.partitions_def_name != "clips":
                continue  # the channels' partitions
            for clip in map(ClipId.parse, keys):
                self.air[clip.channel].highest = max(self.air[clip.channel].highest, clip.number)
        self.cursor = result.cursor
        return seconds

    def steady_ticks(self, count: int, now: float) -> list[float]:
        """Ticks 15 s apart, as the daemon makes them: each channel airs two 8 s clips between
        two ticks, and the sensor tops its buffer up."""
        from webtv_dagster.defs.clip_production.sensor import clip_production_sensor

        interval = clip_production_sensor.minimum_interval_seconds
        seconds = []
        for index in range(count):
            for air in self.air.values():
                air.aired_through += round(interval / air.channel.clip_seconds)
                self.write_air(air, now + (index + 1) * interval)
            seconds.append(self.tick())
        return seconds

    def retain(self, now: float) -> Retention:
        """Retention's Dagster side at `now`, by each channel's policy: the clips it removes
        lose their partitions and the runs that made them (forget_clips); housekeeping runs
        and observations older than HISTORY_DAYS go (forget_old_runs, forget_old_observations).
        forget_clips runs on `instance` for a sample of the day's clips (the first channel's
        first --retention-sample-runs runs and as many clips never made), timed; on `writer`
        for the other clips made; the other partitions of clips never made (no run to look
        for) are deleted in one statement per 10,000."""
        from webtv_dagster.defs.air.on_air import on_air_stream
        from webtv_dagster.defs.clip_production.assets import broadcast_clip
        from webtv_dagster.lib.history import forget_clips, forget_old_observations, forget_old_runs

        day = Retention()
        for air in self.air.values():
            slug = air.channel.slug
            stored = [
                StoredClip.model_construct(
                    clip_id=key(slug, n),
                    number=n,
                    size_bytes=self.templates.kept_bytes,
                    keys=[],
                    made_at=self.air_time(n),
                    passed_at=self.air_time(n),
                    intermediate_bytes=0,
                )
                for n in range(air.lowest, air.aired_through + 1)
            ]
            gone = clips_to_remove(stored, air.channel.retention, air.aired_through, now)
            if not gone:
                continue
            last = gone[-1].number
            made = {r + n for r in air.runs if r <= last for n in range(self.per_run)}
            made = {n for n in made if n <= last}
            whole = [r for r in air.runs if r + self.per_run - 1 <= last]
            unmade = [clip.number for clip in gone if clip.number not in made]
            if not day.sample_made and not day.sample_unmade:
                sample = {
                    r + n
                    for r in whole[: self.args.retention_sample_runs]
                    for n in range(self.per_run)
                }
                started = time.perf_counter()
                day.runs += forget_clips(self.instance, [key(slug, n) for n in sorted(sample)])
                day.made_seconds = time.perf_counter() - started
                day.sample_made = len(sample)
                unmade_sample = unmade[: len(sample) or self.per_run]
                started = time.perf_counter()
                forget_clips(self.instance, [key(slug, n) for n in unmade_sample])
                day.unmade_seconds = time.perf_counter() - started
                day.sample_unmade = len(unmade_sample)
                made -= sample
                unmade = unmade[len(unmade_sample) :]
            day.runs += forget_clips(self.writer, [key(slug, n) for n in sorted(made)])
            delete_partitions(self.writer, [key(slug, n) for n in unmade])
            air.runs = [r for r in air.runs if r + self.per_run - 1 > last]
            air.lowest = last + 1
            day.removed += len(gone)
        started = time.perf_counter()
        day.old_runs = forget_old_runs(self.instance, now)
        day.old_observations = sum(
            forget_old_observations(self.instance, asset.key, now)
            for asset in (on_air_stream, broadcast_clip)
        )
        day.old_seconds = time.perf_counter() - started
        return day

    def materialize_held(self) -> int:
        """A broadcast_clip materialization for every held clip that was not made, written 500
        at a time (Dagster's batch write), under a run id that has no run: the partition
        statuses of a channel that made every clip. Returns how many."""
        template, written = self.templates.broadcast, 0
        for air in self.air.values():
            made = {r + n for r in air.runs for n in range(self.per_run)}
            numbers = [n for n in range(air.lowest, air.aired_through + 1) if n not in made]
            for offset in range(0, len(numbers), 500):
                entries = [
                    entry
                    for n in numbers[offset : offset + 500]
                    for entry in template.entries(
                        air.channel.slug, [key(air.channel.slug, n)], "", self.air_time(n)
                    )
                ]
                self.writer.event_log_storage.store_event_batch(entries)
                written += len(entries)
        return written

    def restore_removed(self) -> int:
        """Adds back the partitions retention removed (without their runs): the partition
        count of the same days without retention. Returns how many."""
        added = 0
        for air in self.air.values():
            self.add_partitions(air.channel.slug, range(1, air.lowest))
            added += air.lowest - 1
        return added


def key(slug: str, number: int) -> str:
    return ClipId(channel=slug, number=number).key


def delete_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Deletes clip partitions many at once, from Dagster's own table (as history.py deletes
    what Dagster has no API for): what forget_clips does for a clip no run ever targeted."""
    from webtv_dagster.lib.partitions import clip_partitions

    table = DynamicPartitionsTable
    with instance.event_log_storage.index_connection() as connection:
        for offset in range(0, len(keys), PARTITION_BATCH):
            connection.execute(
                table.delete().where(
                    (table.c.partitions_def_name == clip_partitions.name)
                    & table.c.partition.in_(keys[offset : offset + PARTITION_BATCH])
                )
            )


# The queries behind the asset page (overview and events tabs) and the partitions page of
# broadcast_clip. PartitionHealthQuery is the UI's own (dagster-webserver 1.13's bundle); the
# others are the UI's queries with their fragments cut down to the fields that read storage.
QUERIES = {
    "AssetViewDefinitionQuery": """
query AssetViewDefinitionQuery($assetKey: AssetKeyInput!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id key { path } hasDefinitionOrRecord
      assetMaterializations(limit: 1) { timestamp runId }
      definition {
        id groupName isExecutable opNames jobNames description pools
        partitionDefinition { description dimensionTypes { type dynamicPartitionsDefinitionName } }
        partitionKeysByDimension { name }
        owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
        kinds
      }
    }
  }
}""",
    "AssetGraphLiveQuery": """
query AssetGraphLiveQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys, loadMaterializations: true) {
    id opNames assetKey { path }
    assetMaterializations(limit: 1) { timestamp runId stepKey }
    assetObservations(limit: 1) { timestamp runId stepKey }
    assetChecksOrError { ... on AssetChecks { checks {
      name canExecuteIndividually
      executionForLatestMaterialization { id runId status timestamp stepKey
                                          evaluation { severity } }
      partitionDefinition { name description }
      partitionStatuses { ... on AssetCheckDefaultPartitionStatuses {
        succeededPartitions failedPartitions inProgressPartitions skippedPartitions
        executionFailedPartitions } }
    } } }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
  }
  assetsLatestInfo(assetKeys: $assetKeys) {
    id assetKey { path } unstartedRunIds inProgressRunIds
    latestRun { id status startTime endTime }
  }
}""",
    "RecentAssetEventsQuery": """
query RecentAssetEventsQuery($assetKey: AssetKeyInput!, $limit: Int!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      assetEventHistory(limit: $limit,
                        eventTypeSelectors: [MATERIALIZATION, OBSERVATION, FAILED_TO_MATERIALIZE]) {
        results {
          ... on MaterializationEvent { partition runId timestamp stepKey label description
                                        tags { key value } metadataEntries { label }
                                        runOrError { ... on Run { id status } } }
          ... on ObservationEvent { partition runId timestamp metadataEntries { label } }
        }
        cursor
      }
    }
  }
}""",
    "PartitionHealthQuery": """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses {
          ranges { status startTime endTime startKey endKey }
        }
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses {
                ranges { status startTime endTime startKey endKey }
              }
              ... on DefaultPartitionStatuses {
                materializedPartitions materializingPartitions failedPartitions
              }
            }
          }
        }
      }
    }
  }
}""",
    "AssetPartitionDetailQuery": """
query AssetPartitionDetailQuery($assetKey: AssetKeyInput!, $partitionKey: String!) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      id
      definition {
        id opNames
        latestRunForPartition(partition: $partitionKey) { id status endTime }
      }
      assetEventHistory(partitions: [$partitionKey], limit: 1000,
                        eventTypeSelectors: [MATERIALIZATION, OBSERVATION, FAILED_TO_MATERIALIZE]) {
        results {
          ... on MaterializationEvent { runId partition timestamp stepKey label
                                        metadataEntries { label }
                                        runOrError { ... on Run { id status } } }
          ... on ObservationEvent { runId partition timestamp metadataEntries { label } }
          ... on FailedToMaterializeEvent { runId partition timestamp }
        }
      }
    }
  }
}""",
}
ASSET_PAGE = ["AssetViewDefinitionQuery", "AssetGraphLiveQuery", "RecentAssetEventsQuery"]


@contextlib.contextmanager
def running_webserver(env: dict[str, str], folder: Path) -> Iterator[str]:
    """dagster-webserver on a free loopback port, on the project's workspace; yields its
    GraphQL URL once broadcast_clip's definition answers."""
    port = free_port_block(1)
    while port >= 32_768:  # below the ephemeral ports, which an outgoing connection may take
        port = free_port_block(1)
    log = folder / "webserver.log"
    server = subprocess.Popen(
        [
            str(BIN / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(ROOT / "workspace.yaml"),
        ],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError, ValueError):
                answer = graphql(url, "AssetViewDefinitionQuery")[1]
                if answer.get("data", {}).get("assetOrError", {}).get("definition"):
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dagster-webserver did not answer; see {log}")
            time.sleep(1)
        yield url
    finally:
        stop_process(server, timeout=30)


def graphql(url: str, name: str, **variables) -> tuple[float, dict]:
    variables = {
        "assetKey": {"path": ["broadcast_clip"]},
        "assetKeys": [{"path": ["broadcast_clip"]}],
        "limit": 100,
        **variables,
    }
    body = json.dumps({"query": QUERIES[name], "variables": variables, "operationName": name})
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return time.perf_counter() - started, answer


def time_queries(url: str, partition_key: str | None, repeats: int = 3) -> dict[str, tuple]:
    """Each query once cold, then `repeats` times: (first s, median s, what it returned)."""
    timings = {}
    for name in QUERIES:
        variables = {"partitionKey": partition_key or ""}
        first, answer = graphql(url, name, **variables)
        if answer.get("errors"):
            raise SystemExit(f"{name} failed: {answer['errors'][0].get('message')}")
        again = [graphql(url, name, **variables)[0] for _ in range(repeats)]
        timings[name] = (first, statistics.median(again), summary(name, answer))
    return timings


def summary(name: str, answer: dict) -> str:
    data = answer["data"]
    if name == "PartitionHealthQuery":
        node = data["assetNodeOrError"]
        keys = len(node["partitionKeysByDimension"][0]["partitionKeys"])
        made = len(node["assetPartitionStatuses"]["materializedPartitions"])
        return f"{keys:,} keys, {made:,} materialized"
    if name == "AssetGraphLiveQuery":
        stats = data["assetNodes"][0]["partitionStats"]
        return f"{stats['numPartitions']:,} partitions, {stats['numMaterialized']:,} materialized"
    if name == "AssetPartitionDetailQuery":
        return f"{len(data['assetOrError']['assetEventHistory']['results'])} events"
    if name == "RecentAssetEventsQuery":
        return f"{len(data['assetOrError']['assetEventHistory']['results'])} events"
    return ""


def megabytes(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def print_real(figures: RealFigures, channel: Channel) -> None:
    clips = figures.clips
    print(
        f"REAL: one clip_job run of {clips} clips of {channel.clip_seconds:g} s "
        f"({channel.slug}, offline backends, in-process): {figures.seconds:.1f} s"
    )
    rows = figures.row_bytes
    by_table = ", ".join(f"{name} {value / clips / 1e3:.1f}" for name, value in rows.items())
    print(
        f"  Dagster, per clip: {figures.events / clips:.1f} events, "
        f"{sum(rows.values()) / clips / 1e3:.1f} kB of row data without indexes (kB by table: "
        f"{by_table}); with indexes, at scale: see each run's 'held' line"
    )
    by_type = ", ".join(
        f"{kind} {count / clips:.1f} x {size / count / 1e3:.2f}"
        for kind, (count, size) in figures.event_bytes.items()
    )
    print(f"  events per clip by type (count x kB each): {by_type}")
    print(
        f"  S3, per clip: {megabytes(figures.s3_made / clips)} as made; "
        f"{megabytes(figures.s3_kept / clips)} kept once retention removed its intermediates "
        f"(upscaled, interpolated: {channel.retention.keep_intermediates_hours:g} h after QC)"
    )
    print()


def print_day(day: Day, first: bool) -> None:
    if first:
        print(
            f"{'day':>4s} {'partitions':>10s} {'runs':>6s} {'events':>8s} {'checks':>7s} "
            f"{'db MB':>7s} {'events written':>16s} {'removed':>8s} {'forget ms/clip':>15s} "
            f"{'old runs':>13s} {'tick catch-up':>13s} {'tick steady':>11s}"
        )
        print(f"{'':>71s} {'made / unmade':>15s} {'forgotten':>13s}")
        print(
            "  (rows and size after the day's retention; catch-up: the tick reading the day's "
            "partitions at once; steady: median of ticks 15 s apart)"
        )
    rows, retention = day.rows, day.retention

    def per_clip(seconds: float, clips: int) -> str:
        return f"{seconds / clips * 1e3:6.0f}" if clips else f"{'-':>6s}"

    forget = (
        f"{per_clip(retention.made_seconds, retention.sample_made)} / "
        f"{per_clip(retention.unmade_seconds, retention.sample_unmade)}"
    )
    print(
        f"{day.day:4d} {rows['dynamic_partitions']:10,d} {rows['runs']:6,d} "
        f"{rows['event_logs']:8,d} {rows['asset_check_executions']:7,d} "
        f"{day.size / 1e6:7.1f} {day.events:7,d} in {day.write_seconds:4.0f} s "
        f"{retention.removed:8,d} {forget:>15s} {retention.old_runs:4,d} in "
        f"{retention.old_seconds:4.1f} s {day.catch_up_tick:11.3f} s "
        f"{statistics.median(day.steady_ticks):9.3f} s",
        flush=True,
    )


def print_retention_cost(days: list[Day], args, channels: int, per_run: int) -> None:
    """What retention's Dagster side would cost with every clip made, from the timed samples."""
    made = sum(day.retention.sample_made for day in days)
    if not made:
        return
    per_made = sum(day.retention.made_seconds for day in days) / made
    unmade = sum(day.retention.sample_unmade for day in days)
    per_unmade = sum(day.retention.unmade_seconds for day in days) / max(1, unmade)
    full = per_made * args.clips_per_day
    print(
        f"  retention, Dagster side (forget_clips, a connection per query): {per_made * 1e3:.0f}"
        f" ms a clip made ({made} timed), {per_unmade * 1e3:.0f} ms a partition never made "
        f"({unmade} timed): a day of {args.clips_per_day:,} clips, all made, takes "
        f"{full / 60:.1f} min a channel, {full * channels / 60:.1f} min for {channels}"
    )
    old = [day.retention for day in days if day.retention.old_runs]
    if old:
        per_run_seconds = sum(r.old_seconds for r in old) / sum(r.old_runs for r in old)
        playlists = args.clips_per_day / per_run * channels
        print(
            f"  forget_old_runs: {per_run_seconds * 1e3:.0f} ms a housekeeping run: a day of "
            f"{playlists:,.0f} playlist runs (one per clip run) takes "
            f"{per_run_seconds * playlists / 60:.1f} min"
        )


def query_round(results: dict, entry: str, url: str, partition_key: str | None, title: str):
    """Times the queries, keeps their timings under `entry` and prints them."""
    results[entry] = time_queries(url, partition_key)
    print_queries(title, results[entry])


def print_queries(title: str, timings: dict[str, tuple]) -> None:
    print(f"  GraphQL, {title} (first call; median of 3 after):")
    for name, (first, median, what) in timings.items():
        page = "asset page" if name in ASSET_PAGE else "partitions page"
        print(f"    {name:27s} {page:16s} {first:7.2f} s {median:7.2f} s   {what}")


def flatness(days: list[Day], history_days: int) -> list[str]:
    """How the row counts and the database size moved from retention's first removal, and
    once the housekeeping history (runs and observations kept `history_days`) is full too."""
    started = next((day.day for day in days if day.retention.removed), None)
    if started is None or started >= days[-1].day:
        return ["  retention removed nothing yet: no flatness to judge"]
    lines = [compare(days[started - 1], days[-1], "retention's first removal")]
    full = max(started, history_days + 1)  # day 1's housekeeping goes at the end of day 8
    if full < days[-1].day:
        lines.append(compare(days[full - 1], days[-1], f"{history_days} days of housekeeping"))
    else:
        lines.append(
            f"  (housekeeping runs and observations are kept {history_days} days: they grow "
            f"until day {full}, past this run's last day)"
        )
    return lines


def compare(first: Day, last: Day, since: str) -> str:
    def change(before: float, after: float) -> str:
        return f"{(after - before) / before:+.0%}" if before else "n/a"

    tables = ", ".join(
        f"{table} {first.rows[table]:,} -> {last.rows[table]:,} "
        f"({change(first.rows[table], last.rows[table])})"
        for table in TABLES
    )
    return (
        f"  day {first.day} ({since}) to day {last.day}: {tables}; database "
        f"{megabytes(first.size)} -> {megabytes(last.size)} ({change(first.size, last.size)})"
    )


def run_scenario(
    label: str, channels: list[Channel], days: int, args, postgres, templates, work: Path
) -> dict:
    from webtv_dagster.lib.history import HISTORY_DAYS

    began = time.monotonic()
    database = Database(postgres, f"month_{label}")
    home = work / label
    # The sensor plans the channels of the file it reads at each tick: this run's channels.
    channels_file = work / f"channels-{label}.yaml"
    write_channels_file(channels_file, len(channels), args.keep_days)
    os.environ["WEBTV_CHANNELS_FILE"] = str(channels_file)
    results: dict = {"label": label}
    per_day = args.clips_per_day
    print(
        f"SCENARIO {label}: {days} days x {len(channels)} channel(s), {per_day:,} clip "
        f"partitions a day each (all real partitions), {args.materialized_per_day} of them made "
        f"a day each (synthetic copies of the real run), retention keep_days="
        f"{args.keep_days:g} (clips) and {HISTORY_DAYS} days (housekeeping runs, observations)"
        f", run after each day{', then VACUUM (ANALYZE)' if args.vacuum else ''}"
    )
    with database.instance(home) as instance, database.instance(home) as writer:
        writer.optimize_for_webserver(statement_timeout=0, pool_recycle=3_600, max_overflow=5)
        for snapshot in templates.snapshots:
            if isinstance(snapshot, JobSnap):
                writer.run_storage.add_job_snapshot(snapshot)
            else:
                writer.run_storage.add_execution_plan_snapshot(snapshot)
        start = time.time() - days * DAY  # the simulation ends now
        simulation = Simulation(instance, writer, templates, channels, args, start)
        history: list[Day] = []
        for day in range(days):
            started = time.perf_counter()
            events = simulation.add_day(day)
            written = time.perf_counter() - started
            now = simulation.day_end(day)
            catch_up = simulation.tick()  # reads the day's partitions at once
            retention = simulation.retain(now)
            steady = simulation.steady_ticks(args.day_ticks, now)
            if args.vacuum:
                database.vacuum()
            history.append(
                Day(
                    day=day + 1,
                    rows=database.rows(),
                    size=database.size(),
                    catch_up_tick=catch_up,
                    steady_ticks=steady,
                    retention=retention,
                    events=events,
                    write_seconds=written,
                )
            )
            print_day(history[-1], first=day == 0)
        print("\n".join(flatness(history, HISTORY_DAYS)))
        print_retention_cost(history, args, len(channels), len(templates.clip_run.keys))
        results["days"] = history
        now = simulation.day_end(days - 1)
        partitions = database.rows()["dynamic_partitions"]
        fresh = simulation.tick(fresh=True)
        steady = simulation.steady_ticks(args.end_ticks, now)
        results["ticks"] = (partitions, fresh, steady)
        print(
            f"  clip sensor, {partitions:,} partitions held: first tick without a cursor "
            f"(reads them all) {fresh:.3f} s; {len(steady)} steady ticks median "
            f"{statistics.median(steady):.3f} s, max {max(steady):.3f} s"
        )
        tables = database.table_bytes()
        made = database.value(
            "SELECT count(DISTINCT partition) FROM event_logs WHERE "
            "dagster_event_type = 'ASSET_MATERIALIZATION' AND "
            "asset_key = %s",
            ('["broadcast_clip"]',),
        )
        results["made_kept"] = made
        print(
            f"  held: {made:,} clips made (with their runs), {partitions:,} partitions, "
            f"database {megabytes(database.size())}; tables with indexes: "
            + ", ".join(f"{name} {megabytes(value)}" for name, value in tables.items())
        )
        runs_bytes = sum(value for name, value in tables.items() if name != "dynamic_partitions")
        if made:
            print(
                f"  Dagster bytes, indexes included: {runs_bytes / made / 1e3:.1f} kB a clip made "
                "(its runs' rows, and its share of playlist runs and observations), "
                f"{tables['dynamic_partitions'] / partitions:.0f} B a partition; with every one "
                f"of the {partitions:,} clips held made, about "
                f"{megabytes(runs_bytes / made * partitions)}"
            )
        env = {**os.environ, **database.env, "DAGSTER_HOME": str(home)}
        with running_webserver(env, home) as url:
            query_round(
                results,
                "queries",
                url,
                simulation.materialized,
                f"{partitions:,} partitions (retention on)",
            )
            if args.materialize_held in (label, "both"):
                started = time.perf_counter()
                written = simulation.materialize_held()
                print(
                    f"  EVERY HELD CLIP MADE: {written:,} broadcast_clip materializations added "
                    f"for the clips past air not made (batch writes, no runs, no checks, no other "
                    f"assets; {time.perf_counter() - started:.0f} s)"
                )
                query_round(
                    results,
                    "held_queries",
                    url,
                    simulation.materialized,
                    f"{partitions:,} partitions, all made (retention on)",
                )
            if args.without_retention:
                added = simulation.restore_removed()
                total = database.rows()["dynamic_partitions"]
                catch_up = simulation.tick()
                steady = simulation.steady_ticks(args.end_ticks, now)
                results["full"] = (total, catch_up, steady)
                print(
                    f"  WITHOUT RETENTION: the {added:,} removed partitions added back "
                    f"(their runs stay deleted), {total:,} in all"
                )
                print(
                    f"  clip sensor: the tick reading the {added:,} at once {catch_up:.3f} s; "
                    f"{len(steady)} steady ticks median {statistics.median(steady):.3f} s, "
                    f"max {max(steady):.3f} s"
                )
                query_round(
                    results,
                    "full_queries",
                    url,
                    simulation.materialized,
                    f"{total:,} partitions (retention off)",
                )
    database.connection.close()
    print(f"  ({(time.monotonic() - began) / 60:.1f} min)\n", flush=True)
    return results


def print_targets(results: list[dict]) -> None:
    print("TARGETS")
    for result in results:
        label = result["label"]
        partitions, _, steady = result["ticks"]
        ticks = [max(day.steady_ticks) for day in result["days"]] + steady
        worst = max(ticks)
        verdict = "met" if worst < 1 else "MISSED"
        print(
            f"  {label}: steady tick under 1 s: {verdict} (worst of all steady ticks "
            f"{worst:.3f} s, {partitions:,} partitions at the end)"
        )
        if "full" in result:
            total, _, steady = result["full"]
            print(
                f"  {label}: steady tick under 1 s without retention ({total:,} partitions): "
                f"{'met' if max(steady) < 1 else 'MISSED'} (max {max(steady):.3f} s)"
            )
        for entry, title in (
            ("queries", "retention on"),
            ("held_queries", "retention on, every held clip made"),
            ("full_queries", "retention off"),
        ):
            if entry not in result:
                continue
            timings = result[entry]
            worst_name = max(ASSET_PAGE, key=lambda name: timings[name][1])
            worst = timings[worst_name][1]
            partition_page = max(
                value[1] for name, value in timings.items() if name not in ASSET_PAGE
            )
            print(
                f"  {label}: asset page queries under 2 s ({title}): "
                f"{'met' if worst < 2 else 'MISSED'} (slowest {worst_name} {worst:.2f} s; "
                f"partitions page slowest {partition_page:.2f} s)"
            )


def started_postgres(servers: contextlib.ExitStack) -> dict[str, str]:
    """running_postgres, tried again when its server was still starting up when connected to
    (it connects once its port listens; a loaded machine can be that slow)."""
    for attempt in range(3):
        try:
            return servers.enter_context(running_postgres())
        except psycopg2.OperationalError as error:
            if "starting up" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 2 minutes")
    parser.add_argument("--days", type=int, default=30, help="days of the one-channel run")
    parser.add_argument(
        "--channels", type=int, default=10, help="channels of the second run (0: skip it)"
    )
    parser.add_argument("--channel-days", type=int, default=7, help="days of the second run")
    parser.add_argument(
        "--clips-per-day",
        type=int,
        default=None,
        help="clip partitions a day per channel (default: a day of air)",
    )
    parser.add_argument(
        "--materialized-per-day",
        type=int,
        default=30,
        help="clips made a day per channel (copies of the real run's events)",
    )
    parser.add_argument("--clips-per-run", type=int, default=5)
    parser.add_argument(
        "--real-only", action="store_true", help="only the real run's per-clip figures"
    )
    parser.add_argument("--keep-days", type=float, default=2, help="the channels' retention")
    parser.add_argument(
        "--retention-sample-runs",
        type=int,
        default=2,
        help="runs whose clips forget_clips removes, timed, each day",
    )
    parser.add_argument("--day-ticks", type=int, default=3, help="steady ticks each day")
    parser.add_argument("--end-ticks", type=int, default=10, help="steady ticks at the end")
    parser.add_argument(
        "--no-vacuum", dest="vacuum", action="store_false", help="leave deleted rows to autovacuum"
    )
    parser.add_argument(
        "--materialize-held",
        choices=["one", "many", "both", "none"],
        default="one",
        help="runs whose queries are timed again with every held clip made (batch writes: "
        "about 5 kB an event)",
    )
    parser.add_argument(
        "--no-without-retention",
        dest="without_retention",
        action="store_false",
        help="skip the measures without retention",
    )
    add_plot_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.days, args.channels, args.channel_days = 3, 2, 3
        args.clips_per_day = args.clips_per_day or 2_000
        args.materialized_per_day, args.keep_days, args.end_ticks = 10, 1, 5
        args.clips_per_run = 2

    work = Path(tempfile.mkdtemp(prefix="webtv-month-"))
    args.data_dir = work / "data"
    os.environ.update(
        {
            "WEBTV_CHANNELS_FILE": str(work / "channels.yaml"),
            "WEBTV_DATA_DIR": str(args.data_dir),
            "WEBTV_CLIPS_PER_RUN": str(args.clips_per_run),
            **S3_KEYS,
        }
    )
    channels = write_channels_file(work / "channels.yaml", max(1, args.channels), args.keep_days)
    args.clips_per_day = args.clips_per_day or round(DAY / channels[0].clip_seconds)
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
        f"(shared: other work may run beside this); work folder {work}\n"
    )
    results = []
    with contextlib.ExitStack() as servers:
        postgres = started_postgres(servers)
        port = free_port_block(max(PORT_OFFSETS.values()) + 1)
        s3 = start_embedded_s3(work / "s3", port, "media", *S3_KEYS.values())
        servers.callback(s3.stop)
        os.environ["WEBTV_S3_ENDPOINT_URL"] = s3.endpoint_url
        real_db = Database(postgres, "month_real")
        figures, templates = measure_real_clips(
            real_db, work / "real", s3.endpoint_url, channels[0], args.clips_per_run, args.data_dir
        )
        real_db.connection.close()
        print_real(figures, channels[0])
        if args.real_only:
            return
        results.append(
            run_scenario("one", channels[:1], args.days, args, postgres, templates, work)
        )
        if args.channels:
            results.append(
                run_scenario("many", channels, args.channel_days, args, postgres, templates, work)
            )
    print_targets(results)
    if args.plot:
        plot_days(args.plot, results, args)
    shutil.rmtree(work, ignore_errors=True)  # kept when the run failed, for its logs


def plot_days(path: Path, results: list[dict], args) -> None:
    """Per simulated day, for each scenario: the database size, the rows of the tables that
    grow with clips, and the steady sensor tick: flat lines once retention runs."""
    panels = [
        Panel("database size after each day", "line", [], {}, xlabel="day", ylabel="MB"),
        Panel("rows after each day", "line", [], {}, xlabel="day", ylabel="rows", log=True),
        Panel("steady clip-sensor tick (median)", "line", [], {}, xlabel="day", ylabel="s"),
    ]
    for result in results:
        days = result["days"]
        label = result["label"]
        panels[0].series[label] = [day.size / 1e6 for day in days]
        for table in ("dynamic_partitions", "event_logs", "runs"):
            panels[1].series[f"{label}: {table}"] = [day.rows[table] for day in days]
        panels[2].series[label] = [statistics.median(day.steady_ticks) for day in days]
    for panel in panels:  # lines of unequal length: each scenario has its own days
        lengths = {len(values) for values in panel.series.values()}
        if len(lengths) > 1:
            longest = max(lengths)
            panel.series = {
                name: values + [float("nan")] * (longest - len(values))
                for name, values in panel.series.items()
            }
        panel.labels = list(range(1, max(lengths) + 1))
    title = "A month of one channel, a week of many: what grows, and the tick"
    note = (
        f"{args.clips_per_day:,} clip partitions a day per channel, "
        f"{args.materialized_per_day} made a day, keep_days {args.keep_days:g}"
    )
    save_plot(path, title, panels, note=note)


if __name__ == "__main__":
    main()
