"""PostgreSQL and Redis servers on free loopback ports, for the tests and the benchmarks that
exercise the production instance and Celery scale-out (Debian's packages, started by hand)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from webtv_dagster.processes import free_port_block, port_is_free, stop_process


def _wait_for_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while port_is_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")
        time.sleep(0.05)


def _connect_when_started(port: int, timeout: float = 30):
    """PostgreSQL listens before it accepts connections ("the database system is starting
    up"): retry until it does."""
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg2.connect(host="127.0.0.1", port=port, user="dagster", dbname="postgres")
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextmanager
def running_postgres() -> Iterator[dict[str, str]]:
    """A PostgreSQL with a database `dagster`; yields the DAGSTER_PG_* variables reaching it.
    Runs as the `postgres` user when called as root (PostgreSQL refuses root)."""
    initdbs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not initdbs:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup --for-tests")
    bindir = initdbs[-1].parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="webtv-postgres-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run(
        [
            *as_postgres,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "dagster",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port_block(1)
    server = subprocess.Popen(
        [
            *as_postgres,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-k",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, "PostgreSQL")
        connection = _connect_when_started(port)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE dagster")
        connection.close()
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": "trusted-locally",
            "DAGSTER_PG_DB": "dagster",
        }
    finally:
        stop_process(server)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_redis() -> Iterator[str]:
    """A Redis without persistence; yields its URL."""
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server is not installed: run scripts/setup --for-tests")
    port = free_port_block(1)
    folder = tempfile.mkdtemp(prefix="webtv-redis-")
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, "Redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(server)
        shutil.rmtree(folder, ignore_errors=True)
