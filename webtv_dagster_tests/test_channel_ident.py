"""The channel ident is a filler clip the pipeline makes (the channel_ident asset and its
sensor); the playout only fetches and keeps it, and airs a test card made by FFmpeg alone
while it has none."""

import subprocess
import sys
import threading

import dagster as dg
import pytest

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.clips import ident_key
from webtv_dagster.defs.air.ident import channel_ident, channel_ident_sensor
from webtv_dagster.media.broadcast import render_slate
from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.library import ClipLibrary
from webtv_dagster.playout.publisher import remux_segment
from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.production.ident import IDENT_FRAMES, make_ident, publish_ident

from .conftest import TEST_CHANNELS, clip_resources, studio_for_tests, wait_for


@pytest.fixture(scope="module")
def made_ident(tmp_path_factory, llama_channel):
    return make_ident(llama_channel, tmp_path_factory.mktemp("ident") / "ident.mp4")


def test_the_asset_stores_the_ident_in_the_bucket_with_its_metadata(
    instance, seaweedfs, media_store, tmp_path
):
    result = dg.materialize(
        [channel_ident],
        partition_key="test-llamas",
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, TEST_CHANNELS),
    )
    assert result.success
    ident = media_store.download_file(ident_key("test-llamas"), tmp_path / "ident.mp4")
    info = probe(ident)
    assert (info.video.width, info.video.height, info.video.frames) == (1024, 576, IDENT_FRAMES)
    assert info.audio.duration == pytest.approx(IDENT_FRAMES / 24, abs=1e-3)
    metadata = result.asset_materializations_for_node("channel_ident")[0].metadata
    assert metadata["dagster/uri"].value.endswith("channels/test-llamas/ident.mp4")
    assert metadata["resolution"].value == "1024x576" and metadata["fps"].value == 24
    assert "ident" in metadata["prompt"].value and "offline" in metadata["backend"].value
    assert metadata["duration_seconds"].value == pytest.approx(IDENT_FRAMES / 24, abs=0.01)


def test_the_sensor_requests_each_known_channel_once_per_what_its_ident_is_made_from(
    instance, tmp_path
):
    context = dg.build_sensor_context(instance=instance, resources={"studio": studio_for_tests()})
    requests = channel_ident_sensor(context)
    assert sorted(r.partition_key for r in requests) == ["test-llamas", "test-ocean"]
    # Another title: another run key, so the ident is made again.
    renamed = tmp_path / "channels.yaml"
    renamed.write_text(TEST_CHANNELS.read_text().replace("title: ", "title: New ", 1))
    studio = studio_for_tests(channels_file=renamed)
    again = channel_ident_sensor(
        dg.build_sensor_context(instance=instance, resources={"studio": studio})
    )
    changed = {r.partition_key for r in again} & {r.partition_key for r in requests}
    keys = {r.run_key for r in requests}
    assert [r.partition_key for r in again if r.run_key not in keys] == ["test-llamas"]
    assert changed == {"test-llamas", "test-ocean"}


def test_the_playout_imports_no_generator():
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, webtv_dagster.playout.channel, "
            "webtv_dagster.playout.process; print(sorted(m for m in sys.modules "
            "if m.startswith(('webtv_dagster.backends', 'torch', 'dagster'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert imported.strip() == "[]"


def test_the_slate_is_a_gapless_broadcast_clip(tmp_path):
    slate = render_slate(tmp_path / "slate.mp4", 128, BROADCAST_PROFILE)
    info = probe(slate, keyframes=True)
    assert (info.video.width, info.video.height, info.video.frames) == (1024, 576, 128)
    interval = BROADCAST_PROFILE.keyframe_interval  # a keyframe where every clip has one
    keyframes = [frame / 24 for frame in range(0, 128, interval)]
    assert info.video.keyframe_times == pytest.approx(keyframes, abs=1e-3)
    assert info.audio.duration == pytest.approx(128 / 24, abs=1e-3)
    assert remux_segment(slate, "ident", "x", 0.0, 24).frames == 128


def test_the_library_keeps_its_ident_when_s3_is_away_and_fetches_a_new_one(
    media_store, made_ident, tmp_path, llama_channel
):
    folder = PlayoutFolder(tmp_path / "playout")
    folder.path.mkdir()
    library = ClipLibrary(media_store, llama_channel.slug, folder, 2**20)
    library._refresh_ident()
    assert library.ident() is None  # not made yet
    publish_ident(media_store, llama_channel.slug, made_ident)
    library._refresh_ident()
    assert library.ident() == folder.ident and folder.ident.read_bytes() == made_ident.read_bytes()
    # S3 away: a playout started now airs the copy it kept.
    away = MediaStore(
        bucket="media",
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="x",
        secret_access_key="y",
    )
    offline = ClipLibrary(away, llama_channel.slug, folder, 2**20)
    offline._refresh_ident()
    assert offline.ident() == folder.ident
    # A copy that cannot air is dropped and not fetched again until the ident is made again.
    library.drop_ident("it does not remux")
    library._refresh_ident()
    assert library.ident() is None
    remade = render_slate(tmp_path / "remade.mp4", 128, BROADCAST_PROFILE)  # other bytes
    publish_ident(media_store, llama_channel.slug, remade)
    library._refresh_ident()
    assert library.ident() == folder.ident and folder.ident.read_bytes() == remade.read_bytes()


def test_a_channel_without_its_ident_airs_the_test_card_then_the_ident(
    rtmp_server, media_store, llama_channel, made_ident, tmp_path
):
    from webtv_dagster.playout.channel import ChannelPlayout, read_state

    url = rtmp_server.publish_url("test-llamas")
    data_dir = tmp_path / "data"
    playout = ChannelPlayout(media_store, llama_channel, url, data_dir, 2**20)
    folder = PlayoutFolder.of(data_dir, "test-llamas")
    thread = threading.Thread(target=playout.run)
    thread.start()
    try:
        wait_for(lambda: read_state(data_dir, "test-llamas") is not None, timeout=60)
        state = read_state(data_dir, "test-llamas")
        assert state.schedule[0].clip_id == "ident" and state.publisher_error is None
        assert folder.slate.exists() and not folder.ident.exists()
        # The pipeline makes the ident: the playout fetches it and airs it from then on.
        publish_ident(media_store, llama_channel.slug, made_ident)
        wait_for(folder.ident.exists, timeout=30)
        first = len(read_state(data_dir, "test-llamas").schedule)
        wait_for(lambda: len(read_state(data_dir, "test-llamas").schedule) > first + 1)
        assert playout.sources[-1].pick(None, [])[0].path == folder.ident
        assert read_state(data_dir, "test-llamas").publisher_error is None
    finally:
        playout.stop.set()
        thread.join(timeout=60)


def test_a_channel_start_makes_a_missing_ident_once(seaweedfs, media_store, tmp_path, monkeypatch):
    """What `webtv channel start` does before the channel's first air."""
    from webtv_dagster.defs.air.ident import materialize_missing_ident

    from .conftest import ACCESS_KEY, SECRET_KEY, settings_for_tests

    # As the command runs: the keys in its environment (the resources name them, EnvVar).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    settings = settings_for_tests(
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_bucket=media_store.bucket,
        data_dir=tmp_path / "data",
    )
    assert materialize_missing_ident(settings, "test-llamas")
    assert media_store.list_keys(ident_key("test-llamas"))
    assert not materialize_missing_ident(settings, "test-llamas")  # made already
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("channel_ident"))
        assert event.dagster_event.partition == "test-llamas"


def test_a_filler_that_does_not_remux_gives_way_to_the_test_card(
    media_store, llama_channel, tmp_path, monkeypatch
):
    from webtv_dagster.media.ffmpeg import MediaToolError
    from webtv_dagster.playout import sources
    from webtv_dagster.playout.channel import ChannelPlayout

    playout = ChannelPlayout(media_store, llama_channel, "rtmp://unused/x", tmp_path, 2**20)
    folder = PlayoutFolder.of(tmp_path, llama_channel.slug)
    folder.ident.write_bytes(b"not a video")  # a damaged copy of the ident
    segment = playout._prepare(0.0)
    assert (segment.clip_id, segment.frames) == ("ident", 128)
    assert not folder.ident.exists() and folder.slate.exists()  # dropped; the test card aired
    folder.slate.write_bytes(b"damaged too")
    assert playout._prepare(segment.end).frames == 128  # the test card made again
    # A test card that does not remux as it is made: FFmpeg is broken, the playout stops.
    folder.slate.unlink()
    monkeypatch.setattr(sources, "render_slate", lambda path, *_: path.write_bytes(b"x"))
    with pytest.raises(MediaToolError, match="test card"):
        playout._prepare(0.0)
