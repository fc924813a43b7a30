import contextlib
import shutil
import time
import uuid
from pathlib import Path

import pytest

from webtv_dagster.channels import load_channels
from webtv_dagster.media_store import MediaStore
from webtv_dagster.settings import Settings
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster_tests.servers import free_port_block, start_embedded_s3

TEST_CHANNELS = Path(__file__).with_name("channels.yaml")

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-do-not-log"
PUBLIC_URL = "http://viewer.test:8080"  # where the tests' preview links point


@pytest.fixture
def instance():
    """A temporary Dagster instance (SQLite under a temporary folder) that knows the test
    channels, as the clip sensor's first tick leaves it."""
    import dagster as dg

    with dg.instance_for_test() as test_instance:
        slugs = [channel.slug for channel in load_channels(TEST_CHANNELS).channels]
        test_instance.add_dynamic_partitions("channels", slugs)
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
def media_store(seaweedfs):
    """A fresh bucket on the session's SeaweedFS, so tests never see each other's objects."""
    store = MediaStore(
        bucket=f"test-{uuid.uuid4().hex[:12]}",
        endpoint_url=seaweedfs.endpoint_url,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    store.ensure_bucket()
    yield store
    remove_bucket(seaweedfs.endpoint_url, store.bucket)


def remove_bucket(endpoint_url: str, bucket: str) -> None:
    """Empties and deletes a test's bucket: SeaweedFS gives each bucket a volume of its own and
    has room for about one per GB of free disk, so a session that kept them all ran out."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def rtmp_server(tmp_path, channels):
    """A real nginx-rtmp server on free loopback ports, with the test channels; it serves the
    playout states under tmp_path / "data"."""
    from webtv_dagster_tests.servers import start_rtmp_server

    port = free_port_block(2)
    titles = {channel.slug: channel.title for channel in channels.channels}
    server = start_rtmp_server(tmp_path / "nginx", titles, port, port + 1, tmp_path / "data")
    yield server
    server.stop()


def settings_for_tests(**changes) -> Settings:
    """The tests' settings: the test channels, two clips at once, and one retry at once (tests
    see retries happen without waiting for production delays); `changes` on top."""
    base = {
        "channels_file": TEST_CHANNELS,
        "parallel_clips": 2,
        "stage_retries": 1,
        "stage_retry_delay_seconds": 0,
    }
    return Settings(**(base | changes))


def studio_for_tests(**changes):
    """The Studio resource of settings_for_tests(**changes)."""
    from webtv_dagster.lib.resources import Studio

    return Studio.from_settings(settings_for_tests(**changes))


def definitions_for_tests(**changes):
    """The code location's definitions as settings_for_tests(**changes) make them."""
    from webtv_dagster.definitions import build_definitions

    return build_definitions(settings_for_tests(**changes))


def clip_resources(seaweedfs, bucket: str, channels_file, **settings) -> dict:
    """The resources the clip assets need, on the test SeaweedFS and a channels file (and other
    test settings changed by `settings`)."""
    from webtv_dagster.lib.resources import S3MediaStorage

    return {
        "media_storage": S3MediaStorage(
            public_url=PUBLIC_URL,
            endpoint_url=seaweedfs.endpoint_url,
            bucket=bucket,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        ),
        "studio": studio_for_tests(channels_file=channels_file, **settings),
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
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                picture,
                "-frames:v",
                "64",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                str(video),
            ],
            "test video",
        )
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"sine=f={440 + 110 * index}:r=48000",
                "-t",
                "2.6667",
                "-ac",
                "2",
                str(music),
            ],
            "test tone",
        )
        clip = folder / f"clip{index}.mp4"
        normalize_clip(video, music, 64, clip, BROADCAST_PROFILE)
        made.append(clip)
    return made


def upload_playlist(store, channel, clips_by_number: dict[int, Path]) -> None:
    """Stores the clips and publishes them as the channel's playlist (prompt "prompt N")."""
    from webtv_dagster.clips import ClipId
    from webtv_dagster.playout.playlist import Playlist, PlaylistEntry, publish_playlist

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
            )
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


@pytest.fixture
def irc_server(tmp_path):
    """A real IRC server (miniircd) on a free loopback port, with the bot's password."""
    from .irc import IrcServer

    server = IrcServer(tmp_path)
    yield server
    server.stop()


SECRET_PATH = "/services/T0001/B0002/very-secret-token"


@pytest.fixture
def receiver():
    """A webhook receiver on a free loopback port; yields (url, the JSON bodies it got)."""
    with webhook_receiver() as (url, received, _):
        yield url, received


@contextlib.contextmanager
def webhook_receiver(refuse_first: int = 0, port: int = 0):
    """A webhook receiver on a loopback port (`port`, or a free one) that answers 503 to its
    first `refuse_first` posts; yields (url, the JSON bodies it took, the attempts it got)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []
    attempts: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            attempts.append(time.monotonic())
            if len(attempts) <= refuse_first:
                self.send_response(503)
            else:
                received.append({"path": self.path, **body})
                self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port or free_port_block(1)), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{SECRET_PATH}", received, attempts
    finally:
        server.shutdown()
