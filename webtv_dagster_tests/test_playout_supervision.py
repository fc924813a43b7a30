"""The watchdog sensor and playout_job keep each channel's playout process on air."""

import os
import signal
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from webtv_dagster.defs.air.on_air import playout_job, playout_watchdog_sensor
from webtv_dagster.lib.names import CHANNEL_TAG
from webtv_dagster.lib.resources import Studio
from webtv_dagster.playout.process import PlayoutStartError, hold_playout_lock, playout_status
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.settings import Settings
from webtv_dagster.stack.playouts import stop_playout

from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, upload_playlist, wait_for

SLUG = "test-llamas"


@pytest.fixture
def on_air_env(seaweedfs, media_store, rtmp_server, tmp_path, monkeypatch) -> Path:
    """The environment `webtv up` gives its children, on the test servers; yields the data
    folder and stops every playout started meanwhile."""
    data_dir = tmp_path / "data"
    for variable, value in {
        "WEBTV_DATA_DIR": str(data_dir),
        "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS),
        "WEBTV_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "WEBTV_S3_BUCKET": media_store.bucket,
        "WEBTV_RTMP_PORT": str(rtmp_server.rtmp_port),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }.items():
        monkeypatch.setenv(variable, value)
    yield data_dir
    for slug in ("test-llamas", "test-ocean"):
        stop_playout(data_dir, slug)


def studio_from_env() -> Studio:
    """The studio of the settings on_air_env gives the playouts (as `webtv up` gives the code
    location and its children the same environment)."""
    return Studio.from_settings(Settings.from_env())


def watchdog_request(instance, slug: str) -> dg.RunRequest | None:
    result = playout_watchdog_sensor(
        dg.build_sensor_context(instance=instance, resources={"studio": studio_from_env()})
    )
    requests = [r for r in result.run_requests or [] if r.tags[CHANNEL_TAG] == slug]
    return requests[0] if requests else None


def run_playout_job(instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    resources = {"studio": studio_from_env()}
    job = dg.Definitions(jobs=[playout_job], resources=resources).resolve_job_def("playout_job")
    return job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags, raise_on_error=False
    )


def stream_has_frames(url: str) -> bool:
    command = ["ffmpeg", "-loglevel", "error", "-i", url, "-frames:v", "12", "-f", "null", "-"]
    grab = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return grab.returncode == 0


def test_a_killed_playout_is_brought_back_by_the_watchdog_on_the_same_timeline(
    on_air_env, media_store, llama_channel, broadcast_clips, rtmp_server
):
    clips = {number: broadcast_clips[number % 4] for number in range(1, 9)}
    upload_playlist(media_store, llama_channel, clips)
    with dg.instance_for_test() as instance:
        # Nothing is on air: the watchdog asks for both channels; the job starts this one.
        assert watchdog_request(instance, "test-ocean") is not None
        request = watchdog_request(instance, SLUG)
        assert run_playout_job(instance, request).success
        first = playout_status(on_air_env, SLUG)
        assert first.running and first.pid
        assert stream_has_frames(rtmp_server.publish_url(SLUG))
        assert watchdog_request(instance, SLUG) is None  # on air: nothing to do

        os.kill(first.pid, signal.SIGKILL)  # its publisher dies with it
        wait_for(lambda: not playout_status(on_air_env, SLUG).running, 60, "playout exit")
        before = read_state(on_air_env, SLUG)

        request = watchdog_request(instance, SLUG)
        assert run_playout_job(instance, request).success
        second = playout_status(on_air_env, SLUG)
        assert second.running and second.pid != first.pid
        assert stream_has_frames(rtmp_server.publish_url(SLUG))
        # The channel goes on where it stopped (the rest of the clip it was airing), then after
        # the clips it had aired, further along the same timeline.
        wait_for(lambda: read_state(on_air_env, SLUG).timeline_end > before.timeline_end, 30)
        (after, *_) = [
            clip
            for clip in read_state(on_air_env, SLUG).schedule
            if clip.stream_seconds >= before.timeline_end - 1e-6
        ]
        assert int(after.clip_id.rsplit("-", 1)[1]) == before.aired_through + 1
        assert after.stream_seconds == pytest.approx(before.timeline_end)

        # The restart is recorded on the stream asset.
        observations = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("on_air_stream")), limit=5
        ).records
        actions = [r.asset_observation.metadata["playout"].value for r in observations]
        assert actions == ["started", "started"]


def test_a_stopped_channel_stays_off_and_a_second_playout_is_refused(on_air_env):
    with dg.instance_for_test() as instance:
        stop_playout(on_air_env, SLUG)  # what `webtv channel stop` does
        assert watchdog_request(instance, SLUG) is None
        assert watchdog_request(instance, "test-ocean") is not None
    with hold_playout_lock(on_air_env, SLUG):
        with pytest.raises(PlayoutStartError, match="already on air"):
            with hold_playout_lock(on_air_env, SLUG):
                pass


def test_with_the_rtmp_server_down_the_job_says_so_and_the_playout_airs_once_it_is_up(
    on_air_env, media_store, llama_channel, broadcast_clips, monkeypatch, tmp_path, channels
):
    from webtv_dagster_tests.servers import free_port_block, start_rtmp_server

    port = free_port_block(2)
    monkeypatch.setenv("WEBTV_RTMP_PORT", str(port))  # nothing listens there yet
    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 9)})
    with dg.instance_for_test() as instance:
        result = run_playout_job(instance, watchdog_request(instance, SLUG))
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.event_specific_data.error.message
        assert "cannot publish" in message and "Connection refused" in message
        assert "publisher to rtmp://127.0.0.1:" in message
        # The playout is up and keeps trying: when the server comes, the channel airs.
        assert playout_status(on_air_env, SLUG).running
        titles = {channel.slug: channel.title for channel in channels.channels}
        server = start_rtmp_server(tmp_path / "late-nginx", titles, port, port + 1, on_air_env)
        try:
            assert wait_for(lambda: stream_has_frames(server.publish_url(SLUG)), 30, "frames")
            wait_for(lambda: read_state(on_air_env, SLUG).publisher_error is None, 10, "no error")
        finally:
            stop_playout(on_air_env, SLUG)
            server.stop()


def test_a_stuck_playout_is_replaced(
    on_air_env, media_store, llama_channel, broadcast_clips, monkeypatch
):
    import json
    import sys
    import time

    from webtv_dagster.playout.state import PlayoutState
    from webtv_dagster.stack import playouts
    from webtv_dagster.stack.playouts import ensure_playout

    upload_playlist(media_store, llama_channel, {1: broadcast_clips[0]})
    # A playout that holds its lock but has queued nothing for ten minutes.
    stuck = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import pathlib, sys, time\n"
                "from webtv_dagster.playout.process import hold_playout_lock\n"
                f"with hold_playout_lock(pathlib.Path({str(on_air_env)!r}), {SLUG!r}):\n"
                "    time.sleep(600)"
            ),
        ]
    )
    wait_for(lambda: playout_status(on_air_env, SLUG).running, 30, "the stuck playout's lock")
    long_ago = time.time() - 600  # when it started and last queued a clip
    pid_file = PlayoutFolder.of(on_air_env, SLUG).pid
    pid_file.write_text(json.dumps({"pid": stuck.pid, "started_at": long_ago}))
    PlayoutFolder.of(on_air_env, SLUG).state.write_text(
        PlayoutState(
            channel=SLUG,
            title="t",
            publisher_started_at=long_ago,
            updated_at=long_ago,
            unplayed_seconds=0,
            schedule=[],
            up_next=[],
        ).model_dump_json()
    )
    monkeypatch.setattr(playouts, "PROGRESS_EVERY_SECONDS", 0.5)
    heard: list[str] = []  # what `webtv channel start` prints while it waits
    assert ensure_playout(on_air_env, SLUG, stale_after=60, progress=heard.append) == "restarted"
    assert heard and heard[0].startswith(f"{SLUG}: waiting for the playout to go on air (")
    assert "its log: " in heard[-1]
    assert stuck.wait(timeout=30) is not None
    assert playout_status(on_air_env, SLUG).pid not in (None, stuck.pid)
    assert ensure_playout(on_air_env, SLUG, stale_after=60) == "running"
    # An operator's restart (webtv channel restart, playout_job restart: true) replaces a
    # healthy playout too.
    healthy = playout_status(on_air_env, SLUG).pid
    assert ensure_playout(on_air_env, SLUG, stale_after=60, restart=True) == "restarted"
    assert playout_status(on_air_env, SLUG).pid not in (None, healthy)


def test_a_playout_restarted_by_its_supervisor_is_recorded_on_the_stream(on_air_env):
    import sys

    def playout_holding_the_lock() -> subprocess.Popen:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    "import pathlib, time\n"
                    "from webtv_dagster.playout.process import hold_playout_lock\n"
                    f"with hold_playout_lock(pathlib.Path({str(on_air_env)!r}), {SLUG!r}):\n"
                    "    time.sleep(600)"
                ),
            ]
        )
        wait_for(lambda: playout_status(on_air_env, SLUG).pid == process.pid, 30, "the lock")
        return process

    with dg.instance_for_test() as instance:
        first = playout_holding_the_lock()
        resources = {"studio": studio_from_env()}
        tick = playout_watchdog_sensor(
            dg.build_sensor_context(instance=instance, resources=resources)
        )
        assert not [e for e in tick.asset_events if e.partition == SLUG]
        first.kill()
        first.wait()
        second = playout_holding_the_lock()  # what supervisord does: a new process
        try:
            again = playout_watchdog_sensor(
                dg.build_sensor_context(instance=instance, cursor=tick.cursor, resources=resources)
            )
        finally:
            second.kill()
        (event,) = [e for e in again.asset_events if e.partition == SLUG]
        assert event.metadata["playout"].value == "restarted by its supervisor"
        assert event.metadata["pid"].value == second.pid


def test_a_heartbeat_tells_systemd_it_is_ready_then_alive(tmp_path):
    """Under systemd (Type=notify, WatchdogSec), a playout's or chat bot's heartbeat is also
    the service's notification: READY=1 with the first beat, WATCHDOG=1 with each after."""
    import socket
    import time

    from webtv_dagster.playout.process import HEARTBEAT_SECONDS, Heartbeat

    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.settimeout(5)
        heartbeat = Heartbeat(tmp_path / "heartbeat", notify_socket=address)
        heartbeat.beat()
        heartbeat.beat()  # too soon after the first: no second message
        time.sleep(HEARTBEAT_SECONDS)
        heartbeat.beat()
        assert systemd.recv(64) == b"READY=1\nWATCHDOG=1"
        assert systemd.recv(64) == b"WATCHDOG=1"
    assert (tmp_path / "heartbeat").exists()
