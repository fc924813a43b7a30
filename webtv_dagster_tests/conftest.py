import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

TEST_CHANNELS = Path(__file__).with_name("channels.yaml")
# Definitions read the channels file when imported: point them at the test channels first.
os.environ["WEBTV_CHANNELS_FILE"] = str(TEST_CHANNELS)
os.environ.setdefault("WEBTV_PARALLEL_CLIPS", "2")
# One retry, at once: tests see retries happen without waiting for production delays.
os.environ.setdefault("WEBTV_STAGE_RETRIES", "1")
os.environ.setdefault("WEBTV_STAGE_RETRY_DELAY_SECONDS", "0")

from webtv_dagster.channels import load_channels  # noqa: E402
from webtv_dagster.embedded_s3 import PORT_OFFSETS, start_embedded_s3  # noqa: E402
from webtv_dagster.processes import free_port_block  # noqa: E402
from webtv_dagster.storage import MediaStore  # noqa: E402

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-do-not-log"
PUBLIC_URL = "http://viewer.test:8080"  # where the tests' preview links point


@pytest.fixture
def instance():
    """A temporary Dagster instance (SQLite under a temporary folder)."""
    import dagster as dg

    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session", autouse=True)
def public_folders_are_removed():
    """Tests run as root keep their data in pytest's private folders, so the playouts' and
    nginx's public files go to /var/tmp/webtv-* (rtmp_server.public_folder): removed after."""
    before = set(Path("/var/tmp").glob("webtv-*"))
    yield
    for folder in set(Path("/var/tmp").glob("webtv-*")) - before:
        shutil.rmtree(folder, ignore_errors=True)


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
def rtmp_server(tmp_path, channels):
    """A real nginx-rtmp server on free loopback ports, with the test channels; it serves the
    playout states under tmp_path / "data"."""
    from webtv_dagster.rtmp_server import start_rtmp_server

    port = free_port_block(2)
    titles = {channel.slug: channel.title for channel in channels.channels}
    server = start_rtmp_server(tmp_path / "nginx", titles, port, port + 1, tmp_path / "data")
    yield server
    server.stop()


def clip_resources(seaweedfs, bucket: str, channels_file) -> dict:
    """The resources the clip assets need, on the test SeaweedFS and a channels file."""
    from webtv_dagster.defs.resources import S3MediaStorage, Studio

    return {
        "media_storage": S3MediaStorage(
            public_url=PUBLIC_URL,
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


CLIP_COLOURS = ["red", "lime", "blue", "yellow"]  # far apart in RGB, so frames say which clip


@pytest.fixture(scope="session")
def broadcast_clips(tmp_path_factory) -> list[Path]:
    """Broadcast clips of 64 frames, each one solid colour of CLIP_COLOURS with its own tone."""
    from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
    from webtv_dagster.media.broadcast import normalize_clip
    from webtv_dagster.media.ffmpeg import run_ffmpeg

    folder = tmp_path_factory.mktemp("clips")
    made = []
    for index, colour in enumerate(CLIP_COLOURS):
        video, music = folder / f"v{index}.mp4", folder / f"m{index}.flac"
        picture = f"color=c={colour}:s=1024x576:r=24"
        run_ffmpeg(["-f", "lavfi", "-i", picture, "-frames:v", "64", "-c:v", "libx264",
                    "-preset", "ultrafast", str(video)], "test video")  # fmt: skip
        run_ffmpeg(["-f", "lavfi", "-i", f"sine=f={440 + 110 * index}:r=48000", "-t", "2.6667",
                    "-ac", "2", str(music)], "test tone")  # fmt: skip
        clip = folder / f"clip{index}.mp4"
        normalize_clip(video, music, 64, clip, BROADCAST_PROFILE)
        made.append(clip)
    return made


def upload_playlist(store, channel, clips_by_number: dict[int, Path]) -> None:
    """Stores the clips and publishes them as the channel's playlist (prompt "prompt N")."""
    from webtv_dagster.clips import ClipId
    from webtv_dagster.playlist import Playlist, PlaylistEntry, publish_playlist

    entries = []
    for number, path in clips_by_number.items():
        clip = ClipId(channel=channel.slug, number=number)
        stored = store.upload_file(path, clip.object_key("broadcast.mp4"), "video/mp4")
        entries.append(
            PlaylistEntry(
                clip_id=clip.key,
                prompt=f"prompt {number}",
                seed=number,
                duration_seconds=64 / 24,
                uri=stored.uri,
                path=f"clips/{clip.key}/broadcast.mp4",
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
            )  # fmt: skip
        )
    publish_playlist(store, Playlist(channel=channel.slug, title=channel.title, entries=entries))


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    """Polls `condition` until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL for the session; yields the DAGSTER_PG_* variables that reach it."""
    from .servers import running_postgres

    with running_postgres() as variables:
        yield variables


@pytest.fixture
def redis_url():
    """A real Redis (Debian's redis-server) on a free loopback port, for Celery."""
    from .servers import running_redis

    with running_redis() as url:
        yield url


def command_lines(but: set[int] = frozenset()) -> str:
    """The command line of every process on the machine but those of `but`, as `ps` shows
    them to any user."""
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        if int(path.parent.name) in but:
            continue
        with contextlib.suppress(OSError):
            lines.append(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(lines)
