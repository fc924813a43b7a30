"""`webtv up` on free ports in a fresh folder, for the benchmarks that measure the whole stack."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster.storage import MediaStore
from webtv_dagster_tests.servers import free_port_block

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningStack:
    process: subprocess.Popen
    environment: dict[str, str]
    store: MediaStore
    rtmp_port: int
    data_dir: Path


def start_webtv_up(
    folder: Path, channels_file: Path, access_key: str, secret_key: str, **extra: str
) -> RunningStack:
    """Starts `webtv up` with its data under `folder`, its log in folder/webtv-up.log."""
    s3_port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    rtmp_port, ui_port = free_port_block(2), free_port_block(1)
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
    log = (folder / "webtv-up.log").open("w")
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "webtv"), "up", "--port", str(ui_port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = MediaStore(
        "media", environment["WEBTV_S3_ENDPOINT_URL"], "us-east-1", access_key, secret_key
    )
    return RunningStack(process, environment, store, rtmp_port, folder / "data")
