"""Servers on free loopback ports for the tests and benchmarks, each started by hand and
stopped by its caller: the embedded S3 (SeaweedFS) and nginx-rtmp as the stack configures
them, and PostgreSQL and Redis (Debian's packages) for the production instance and Celery
scale-out."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from webtv_dagster.media_store import MediaStore
from webtv_dagster.stack.embedded_s3 import (
    PORT_OFFSETS,
    remove_own_sockets,
    weed_command,
    weed_environment,
)
from webtv_dagster.stack.nginx import (
    STREAM_NAME,
    publish_url,
    write_rtmp_config,
)
from webtv_dagster.stack.nginx_process import RtmpServerError, nginx_command
from webtv_dagster.stack.processes import end_processes, port_is_free, stack_processes


def _can_bind(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """A loopback port whose next `size` ports are all free too (for tests and benchmarks),
    below Linux's range for outgoing connections (32768 up), which could take it meanwhile."""
    for _ in range(200):
        base = random.randint(20_000, 32_000 - size)
        if all(_can_bind(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no block of free loopback ports found")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def s3_credentials(access_key_id: str, secret_access_key: str) -> dict[str, str]:
    """The environment that makes `weed` enforce these keys (never its command line)."""
    return {"AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key}


@dataclass
class EmbeddedS3:
    process: subprocess.Popen
    endpoint_url: str
    log_path: Path
    s3_port: int

    def stop(self) -> None:
        stop_process(self.process)
        remove_own_sockets(self.s3_port)


def start_embedded_s3(
    data_dir: Path,
    s3_port: int,
    bucket: str,
    access_key_id: str,
    secret_access_key: str,
    ready_timeout: float = 30.0,
) -> EmbeddedS3:
    """Starts `weed mini` and returns once its S3 API answers with `bucket` in place."""
    ports = {name: s3_port + offset for name, offset in PORT_OFFSETS.items()}
    busy = [port for port in [s3_port, *ports.values()] if not port_is_free(port)]
    if busy:
        raise RuntimeError(
            f"cannot start SeaweedFS on S3 port {s3_port}: ports {busy} are in use "
            "(another `webtv up`?); set WEBTV_S3_ENDPOINT_URL to another port"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "weed.log"
    keys = s3_credentials(access_key_id, secret_access_key)
    environment = weed_environment({**os.environ, **keys})
    command = weed_command(data_dir, s3_port, bucket)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=data_dir
        )
    server = EmbeddedS3(process, f"http://127.0.0.1:{s3_port}", log_path, s3_port)
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited at start-up; see {log_path}")
        try:
            client.head_bucket(Bucket=bucket)
            return server
        except (BotoCoreError, ClientError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not serve S3 within {ready_timeout:.0f} s; see {log_path}")


@dataclass
class RtmpServer:
    process: subprocess.Popen
    root: Path
    rtmp_port: int
    http_port: int

    def publish_url(self, slug: str) -> str:
        return publish_url(self.rtmp_port, slug)

    def hls_url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{slug}/{STREAM_NAME}.m3u8"

    def stop(self) -> None:
        stop_process(self.process)


def start_rtmp_server(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]] | None = None,
    timeout: float = 10.0,
    trusted_proxies: Sequence[str] = (),
) -> RtmpServer:
    """Writes the configuration under `root` for `channels` (slug: title) and their `mirrors`,
    starts nginx and waits until both ports answer. Playout states are served from
    `data_dir`; the addresses of `trusted_proxies` may name viewers (X-Forwarded-For)."""
    command = nginx_command(root)
    busy = [port for port in (rtmp_port, http_port) if not port_is_free(port)]
    if busy:
        raise RtmpServerError(f"cannot start nginx: ports {busy} are in use")
    root = root.resolve()
    write_rtmp_config(
        root,
        channels,
        rtmp_port,
        http_port,
        data_dir,
        mirrors,
        trusted_proxies=trusted_proxies,
    )
    log = (root / "nginx.out").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = RtmpServer(process, root, rtmp_port, http_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (root / "error.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RtmpServerError("nginx exited at start-up: " + " | ".join(tail))
        if not port_is_free(rtmp_port) and not port_is_free(http_port):
            return server
        time.sleep(0.1)
    server.stop()
    raise RtmpServerError(f"nginx did not listen within {timeout:.0f} s; see {root}/error.log")


# The `webtv` command of the environment running the tests or benchmarks.
WEBTV = str(Path(sys.executable).with_name("webtv"))


@dataclass
class RunningStack:
    process: subprocess.Popen
    environment: dict[str, str]
    store: MediaStore
    rtmp_port: int
    data_dir: Path
    webtv: str = WEBTV


def start_webtv_up(
    folder: Path,
    channels_file: Path,
    access_key: str,
    secret_key: str,
    ui_port: int | None = None,
    log: Path | None = None,
    **extra: str,
) -> RunningStack:
    """Starts `webtv up` with its data under `folder`, its log in folder/webtv-up.log (or
    `log`), on free ports (or those `extra` and `ui_port` name: a stack started again on its
    own)."""
    s3_port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    rtmp_port, ui_port = free_port_block(2), ui_port or free_port_block(1)
    environment = {
        **os.environ,
        "WEBTV_DATA_DIR": str(folder / "data"),
        "WEBTV_CHANNELS_FILE": str(channels_file),
        "WEBTV_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "WEBTV_RTMP_PORT": str(rtmp_port),
        "WEBTV_HLS_PORT": str(rtmp_port + 1),
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        **extra,
    }
    output = (log or folder / "webtv-up.log").open("w")
    process = subprocess.Popen(
        [WEBTV, "up", "--port", str(ui_port)],
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    store = MediaStore(
        "media", environment["WEBTV_S3_ENDPOINT_URL"], "us-east-1", access_key, secret_key
    )
    return RunningStack(
        process, environment, store, int(environment["WEBTV_RTMP_PORT"]), folder / "data"
    )


def stop_webtv_up(stack: RunningStack) -> list[int]:
    """Stops a stack as its operator would (`webtv down`), then its `webtv up`; kills what was
    left running of it and returns those pids, which should be none."""
    subprocess.run([stack.webtv, "down"], env=stack.environment, timeout=180)
    stop_process(stack.process, timeout=60)
    data_dir = str(stack.data_dir.resolve())
    left = [pid for pid, folder in stack_processes() if folder == data_dir]
    end_processes(left, signal.SIGKILL, wait_seconds=5)
    return left


def _wait_for_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while port_is_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")
        time.sleep(0.05)


def _wait_until_ready(url: str, what: str, timeout: float = 30) -> None:
    """Prometheus listens before its storage is open and answers 503 until then: wait for
    its readiness endpoint to say 200."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready ({url}) within {timeout:.0f} s")
        time.sleep(0.1)


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


class Prometheus:
    """A Prometheus server scraping `targets`; `value(query)` asks its HTTP API."""

    def __init__(self, url: str):
        self.url = url

    def series(self, query: str) -> list[dict]:
        """The instant query's result, one entry per series (an invalid query raises)."""
        import json
        import urllib.parse
        import urllib.request

        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        with urllib.request.urlopen(address, timeout=5) as answer:
            return json.load(answer)["data"]["result"]

    def value(self, query: str) -> float | None:
        """The instant query's one value (None: no series, or not yet scraped)."""
        result = self.series(query)
        return float(result[0]["value"][1]) if result else None


@contextmanager
def running_prometheus(metrics_url: str, every_seconds: float = 1.0) -> Iterator[Prometheus]:
    """Debian's Prometheus scraping `metrics_url` every `every_seconds`, its storage in a
    temporary folder; yields it once its API answers."""
    if not shutil.which("prometheus"):
        raise RuntimeError("prometheus is not installed: run scripts/setup --for-tests")
    import urllib.parse

    target = urllib.parse.urlsplit(metrics_url)
    port = free_port_block(1)
    folder = Path(tempfile.mkdtemp(prefix="webtv-prometheus-"))
    config = folder / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {every_seconds:g}s, scrape_timeout: {every_seconds:g}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: webtv\n    metrics_path: {target.path}\n"
        f"    static_configs: [{{targets: ['{target.netloc}']}}]\n"
    )
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("w"),
    )
    try:
        _wait_for_port(port, "Prometheus")
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(f"{url}/-/ready", "Prometheus")
        yield Prometheus(url)
    finally:
        stop_process(server)
        shutil.rmtree(folder, ignore_errors=True)


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host`, valid a day, and its key (mode 0600), written in `folder`:
    what a test server shows, and what its client trusts."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / f"{host}.crt", folder / f"{host}.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert, key_file
