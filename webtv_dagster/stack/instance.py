"""The Dagster instance: its folder (DAGSTER_HOME), the configuration webtv writes there (the
project's dagster.yaml: run queue, limits, pools, run monitoring; with PostgreSQL storage when
one is configured), and the runs in flight drained when the stack stops.

SQLite (the default, under DAGSTER_HOME) suits one machine and a few concurrent runs; with
many runs, several machines or workers, the same settings go with Postgres storage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from webtv_dagster.settings import Settings

# Package data, so an installed wheel has it too (the project root's dagster.yaml links here).
PROJECT_INSTANCE_YAML = Path(__file__).parent.parent / "dagster.yaml"
POSTGRES_VARIABLES = [
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
]


def instance_config(postgres: bool) -> dict[str, Any]:
    """The project's instance settings; with `postgres`, run, event-log and schedule storage
    in PostgreSQL, its connection read from DAGSTER_PG_* when the instance loads (the password
    never lands in the file)."""
    config = yaml.safe_load(PROJECT_INSTANCE_YAML.read_text())
    if postgres:
        field_names = ["hostname", "port", "username", "password", "db_name"]
        connection: dict[str, Any] = {
            field: {"env": variable}
            for field, variable in zip(field_names, POSTGRES_VARIABLES, strict=True)
        }
        # The driver dagster-postgres installs; SQLAlchemy 2.1 would pick psycopg 3 otherwise.
        connection["scheme"] = "postgresql+psycopg2"
        config["storage"] = {"postgres": {"postgres_db": connection}}
    return config


def dagster_home(settings: Settings) -> Path:
    """The Dagster instance's folder: DAGSTER_HOME when set, else the data folder's dagster/,
    where the project's instance settings are written (PostgreSQL storage when DAGSTER_PG_HOST
    is set)."""
    if settings.dagster_home is not None:
        return settings.dagster_home
    home = (settings.data_dir / "dagster").resolve()
    write_instance_yaml(home, postgres=bool(settings.dagster_pg_host))
    return home


def open_instance(settings: Settings):
    """The settings' Dagster instance (a `dagster.DagsterInstance`, to be closed)."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(dagster_home(settings)))


def write_instance_yaml(home: Path, postgres: bool) -> Path:
    """Writes DAGSTER_HOME/dagster.yaml from the project's settings."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if path.is_symlink():
        path.unlink()  # an earlier webtv linked the project's file here
    header = "# Written by webtv from the project's dagster.yaml; edit that one instead.\n"
    path.write_text(header + yaml.safe_dump(instance_config(postgres), sort_keys=False))
    return path


STOPPED_WITH_STACK_TAG = "webtv/stopped_with_stack"  # runs canceled by a stop, booked again
IN_FLIGHT = ["STARTING", "STARTED", "CANCELING"]


def drain_runs(
    home: Path,
    grace_seconds: float,
    before_cancel: Callable[[], None] = lambda: None,
    cancel_wait_seconds: float = 3,
) -> dict:
    """Lets the runs in flight finish for up to `grace_seconds`, then (once `before_cancel`
    returns: the daemon must be down, so that no run starts after) cancels the others, tagged
    so that the clip sensor books their clips again at the next start (what their earlier
    stages made stays in S3 and is reused). Queued runs stay queued for the next start.
    Returns how many finished and how many were canceled."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[name] for name in IN_FLIGHT]
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def in_flight() -> list[dg.DagsterRun]:
            return instance.get_runs(filters=dg.RunsFilter(statuses=statuses))

        runs = in_flight()
        started = len(runs)
        deadline = time.monotonic() + grace_seconds
        while runs and time.monotonic() < deadline:
            time.sleep(0.5)
            runs = in_flight()
        before_cancel()
        runs = in_flight()
        for run in runs:
            instance.add_run_tags(run.run_id, {STOPPED_WITH_STACK_TAG: "true"})
            try:
                terminated = instance.run_launcher.terminate(run.run_id)
            except dg.DagsterError:  # its code server is gone (restarted): nobody to ask
                terminated = False
            if not terminated:
                instance.report_run_canceled(run, "stopped with the stack")
        deadline = time.monotonic() + cancel_wait_seconds
        while in_flight() and time.monotonic() < deadline:
            time.sleep(0.5)
        for run in in_flight():  # its process did not answer: it is gone with the stack
            instance.report_run_canceled(run, "stopped with the stack")
        return {"finished": started - len(runs), "canceled": len(runs)}
