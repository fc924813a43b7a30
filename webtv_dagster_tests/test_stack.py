"""The supervised stack (`webtv up` without Dagster): every process killed for real comes back
by itself, measured by an RTMP subscriber; and a stack of 20 channels stops in order, fast."""

import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from webtv_dagster.cli import main
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.process import playout_status
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS, weed_command
from webtv_dagster.stack.nginx import write_rtmp_config
from webtv_dagster.stack.playouts import ensure_playout, stop_playout
from webtv_dagster.stack.processes import port_is_free
from webtv_dagster.stack.programs import media_programs, playout_program
from webtv_dagster.stack.supervisord import (
    StackSupervisor,
    supervised_name,
    supervisord_binary,
    write_supervisord_conf,
)
from webtv_dagster.stack.up import stop_stack
from webtv_dagster_tests.servers import free_port_block

from .air_monitor import AirMonitor
from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, upload_playlist, wait_for

SLUG = "test-llamas"


@dataclass
class Stack:
    supervisor: StackSupervisor
    store: MediaStore
    rtmp_port: int
    data_dir: Path

    @property
    def http_port(self) -> int:
        return self.rtmp_port + 1

    def publish_url(self, slug: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{slug}/live"

    def pids(self) -> dict[str, int]:
        """Each program's pid, by its supervisord name (group:program when grouped)."""
        return {supervised_name(info): info["pid"] for info in self.supervisor.processes()}


@contextmanager
def supervised_stack(tmp_path: Path, channels_file: Path):
    """S3, nginx and a playout per channel of `channels_file` under supervisord, on free
    ports (HTTP on the port after RTMP's); yields a Stack."""
    from webtv_dagster.channels import load_channels

    data_dir = (tmp_path / "data").resolve()
    slugs = [channel.slug for channel in load_channels(channels_file).channels]
    s3_port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    rtmp_port = free_port_block(2)
    rtmp_root = data_dir / "nginx"
    write_rtmp_config(rtmp_root, dict.fromkeys(slugs, "t"), rtmp_port, rtmp_port + 1, data_dir)
    (data_dir / "seaweedfs").mkdir(parents=True)
    programs = media_programs(
        data_dir, slugs, rtmp_root, weed_command(data_dir / "seaweedfs", s3_port, "media")
    )
    conf = write_supervisord_conf(data_dir, programs)
    environment = {
        **os.environ,
        "WEBTV_DATA_DIR": str(data_dir),
        "WEBTV_CHANNELS_FILE": str(channels_file),
        "WEBTV_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "WEBTV_S3_BUCKET": "media",
        "WEBTV_RTMP_PORT": str(rtmp_port),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    supervisord = subprocess.Popen(
        [supervisord_binary(), "-c", str(conf)], env=environment, start_new_session=True
    )
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(data_dir), 30, "supervisord")
        store = MediaStore(
            "media", f"http://127.0.0.1:{s3_port}", "us-east-1", ACCESS_KEY, SECRET_KEY
        )
        wait_for(lambda: _answers(store), 30, "the S3 API")
        yield Stack(supervisor, store, rtmp_port, data_dir)
    finally:
        if StackSupervisor.connect(data_dir) is not None:
            StackSupervisor(data_dir).shutdown()
        try:
            supervisord.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(supervisord.pid, signal.SIGKILL)
            raise


def _answers(store: MediaStore) -> bool:
    try:
        store.list_keys("x")
    except Exception:
        return False
    return True


def test_every_process_killed_comes_back_by_itself(
    tmp_path, broadcast_clips, llama_channel, monkeypatch, capsys
):
    with supervised_stack(tmp_path, TEST_CHANNELS) as stack:
        store, supervisor = stack.store, stack.supervisor
        upload_playlist(store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 9)})
        with AirMonitor(stack.publish_url(SLUG)) as viewer:
            viewer.wait_for_frames(48, timeout=90)
            before = stack.pids()
            off_air = {}
            for name, kill in [
                # Every nginx process (master and worker): the RTMP/HLS server is gone.
                ("rtmp", ["pkill", "-9", "-g", str(before["rtmp"])]),
                ("s3", ["kill", "-9", str(before["s3"])]),
                (playout_program(SLUG), ["kill", "-9", str(before[playout_program(SLUG)])]),
            ]:
                killed_at = time.monotonic()
                subprocess.run(kill, check=True)
                wait_for(lambda n=name: stack.pids()[n] not in (0, before[n]), 10, name)
                wait_for(lambda t=killed_at: len(viewer.video(t)) > 24 * 4, 30, "frames again")
                off_air[name] = viewer.longest_gap(killed_at, viewer.video(killed_at)[24 * 4].wall)
            states = {info["name"]: info["statename"] for info in supervisor.processes()}
        assert set(states.values()) == {"RUNNING"}
        # S3 answers again on its data, and the viewer saw each fault for at most 5 s.
        assert _answers(store) and store.get_json(f"channels/{SLUG}/playlist.json")
        assert max(off_air.values()) <= 5.0, off_air
        assert off_air["s3"] < 1.0, off_air  # the cache carried the air
        # Timestamps never went back, across every fault.
        assert min(viewer.timestamp_steps()) > 0

        # An operator's stop goes through supervisord, which then leaves the channel off;
        # start (or the watchdog's playout_job) brings it back the same way.
        assert stop_playout(stack.data_dir, "test-ocean")
        time.sleep(2)
        assert supervisor.process(playout_program("test-ocean"))["statename"] == "STOPPED"
        assert not playout_status(stack.data_dir, "test-ocean").running
        assert ensure_playout(stack.data_dir, "test-ocean", stale_after=90) == "started"
        assert supervisor.process(playout_program("test-ocean"))["statename"] == "RUNNING"

        # `webtv status` lists every supervised process and each channel.
        monkeypatch.setenv("WEBTV_DATA_DIR", str(stack.data_dir))
        monkeypatch.setenv("WEBTV_CHANNELS_FILE", str(TEST_CHANNELS))
        capsys.readouterr()
        main(["status"])
        listed = capsys.readouterr().out
        programs = [playout_program("test-llamas"), playout_program("test-ocean")]
        for name in ("s3", "rtmp", "viewer-service", *programs):
            assert re.search(rf"^{name} +RUNNING +pid \d+", listed, re.MULTILINE), listed
        assert "channel test-llamas: on air" in listed


@pytest.fixture
def twenty_channels(tmp_path) -> Path:
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    template = document["channels"][0]
    document["channels"] = [
        {**template, "slug": f"channel-{n:02d}", "title": f"Channel {n}"} for n in range(20)
    ]
    path = tmp_path / "twenty.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_twenty_channels_on_air_stop_in_order_in_under_15_seconds(
    tmp_path, twenty_channels, broadcast_clips
):
    from webtv_dagster.channels import load_channels
    from webtv_dagster.playout.state import read_state

    channels = load_channels(twenty_channels).channels
    with supervised_stack(tmp_path, twenty_channels) as stack:
        data_dir = stack.data_dir
        for channel in channels:
            upload_playlist(stack.store, channel, {n: broadcast_clips[n % 4] for n in range(1, 4)})
        wait_for(
            lambda: all(read_state(data_dir, c.slug) for c in channels), 180, "20 channels on air"
        )
        started = time.monotonic()
        stop_stack(data_dir, stack.supervisor, grace_seconds=5)
        took = time.monotonic() - started
        print(f"20 channels on air stopped in {took:.1f} s")
        assert StackSupervisor.connect(data_dir) is None
    assert took < 15, f"stopping took {took:.1f} s"
    assert port_is_free(stack.rtmp_port) and port_is_free(stack.http_port)
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
