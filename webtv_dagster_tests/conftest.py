import os
import shutil
import uuid
from pathlib import Path

import pytest

TEST_CHANNELS = Path(__file__).with_name("channels.yaml")
# Definitions read the channels file when imported: point them at the test channels first.
os.environ["WEBTV_CHANNELS_FILE"] = str(TEST_CHANNELS)
os.environ.setdefault("WEBTV_PARALLEL_CLIPS", "2")

from webtv_dagster.channels import load_channels  # noqa: E402
from webtv_dagster.embedded_s3 import PORT_OFFSETS, start_embedded_s3  # noqa: E402
from webtv_dagster.processes import free_port_block  # noqa: E402
from webtv_dagster.storage import MediaStore  # noqa: E402

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-do-not-log"


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    if not shutil.which("ffmpeg"):
        pytest.fail("ffmpeg is required: run scripts/setup")
    port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    server = start_embedded_s3(
        tmp_path_factory.mktemp("seaweedfs"), port, "media", ACCESS_KEY, SECRET_KEY
    )
    yield server
    server.stop()


@pytest.fixture
def media_store(seaweedfs) -> MediaStore:
    """A fresh bucket on the session's SeaweedFS, so tests never see each other's objects."""
    store = MediaStore(
        bucket=f"test-{uuid.uuid4().hex[:12]}",
        endpoint_url=seaweedfs.endpoint_url,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    store.ensure_bucket()
    return store


@pytest.fixture
def rtmp_server(tmp_path):
    """A real nginx-rtmp server on free loopback ports, with the test channels."""
    from webtv_dagster.rtmp_server import start_rtmp_server

    port = free_port_block(2)
    server = start_rtmp_server(tmp_path / "nginx", ["test-llamas", "test-ocean"], port, port + 1)
    yield server
    server.stop()


def clip_resources(seaweedfs, bucket: str, channels_file) -> dict:
    """The resources the clip assets need, on the test SeaweedFS and a channels file."""
    from webtv_dagster.defs.resources import S3MediaStorage, Studio

    return {
        "media_storage": S3MediaStorage(
            endpoint_url=seaweedfs.endpoint_url,
            bucket=bucket,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        ),
        "studio": Studio(channels_file=str(channels_file), parallel_clips=2),
    }


@pytest.fixture(scope="session")
def channels():
    return load_channels(TEST_CHANNELS)


@pytest.fixture(scope="session")
def llama_channel(channels):
    return channels.channels[0]


def latest_metadata(instance, asset, partition: str) -> dict:
    """The metadata values of the asset partition's latest materialization."""
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset.key.to_user_string()}[{partition}] was not materialized"
    metadata = records[0].asset_materialization.metadata
    return {name: entry.value for name, entry in metadata.items()}
