"""Gapless stream-copy playout through a real nginx-rtmp, checked by an FFmpeg subscriber."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.stream import SLIM_PUBLISHER_FFMPEG, default_publisher_ffmpeg
from webtv_dagster.playout.publisher import Publisher, remux_segment

from .conftest import upload_playlist, wait_for

FRAME = 1 / BROADCAST_PROFILE.fps


def packet_times(recording, kind):
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0" if kind == "video" else "a:0",
            "-show_entries",
            "packet=dts_time",
            "-of",
            "json",
            str(recording),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [float(p["dts_time"]) for p in json.loads(out)["packets"] if "dts_time" in p]


def test_clips_join_without_gaps_and_a_clip_appended_mid_stream_airs(
    rtmp_server, broadcast_clips, tmp_path
):
    url = rtmp_server.publish_url("test-llamas")
    recording = tmp_path / "air.flv"
    seconds = 7 * 64 / 24
    subscriber = subprocess.Popen(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            url,
            "-c",
            "copy",
            "-t",
            f"{seconds - 1.5:.3f}",
            str(recording),
        ],
    )
    time.sleep(0.5)
    publisher = Publisher(url, tmp_path / "publisher.log")
    pid = publisher.process.pid
    position = 0.0

    def send(clip):
        nonlocal position
        segment = remux_segment(clip, "clip", "prompt", position, 24)
        assert segment.frames == 64
        publisher.send(segment)
        position = segment.end

    for index in range(6):
        send(broadcast_clips[index % 2])
    time.sleep(2)  # the stream is live; a new clip arrives only now
    send(broadcast_clips[2])
    subscriber.wait(timeout=60)
    publisher.close()
    assert publisher.process.pid == pid and position == pytest.approx(seconds)

    video = packet_times(recording, "video")
    audio = packet_times(recording, "audio")
    video_steps = [b - a for a, b in zip(video, video[1:], strict=False)]
    audio_steps = [b - a for a, b in zip(audio, audio[1:], strict=False)]
    # Six clip boundaries went by, each one frame apart, audio never going back.
    assert video[-1] - video[0] > seconds - 2.5
    assert max(video_steps) <= FRAME + 0.002
    assert min(video_steps) > 0
    assert min(audio_steps) > 0
    warnings = (tmp_path / "publisher.log").read_text()
    assert "Non-monotonous" not in warnings and "corrupt" not in warnings.lower()


def test_channel_airs_its_playlist_new_clips_and_replays(
    rtmp_server, broadcast_clips, media_store, llama_channel, tmp_path
):
    import threading

    from webtv_dagster.playout.channel import ChannelPlayout, read_state

    upload_playlist(media_store, llama_channel, {1: broadcast_clips[0], 2: broadcast_clips[1]})
    url = rtmp_server.publish_url("test-llamas")
    recording = tmp_path / "air.flv"
    subscriber = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", url, "-c", "copy", "-t", "12", str(recording)],
    )
    playout = ChannelPlayout(
        media_store, llama_channel, url, tmp_path / "data", cache_bytes=50 * 2**20
    )
    thread = threading.Thread(target=playout.run)
    thread.start()
    seen: dict[float, str] = {}  # every clip the state file ever scheduled, by start time

    def state():
        current = read_state(tmp_path / "data", "test-llamas")
        for clip in current.schedule if current else []:
            seen[clip.starts_at] = clip.clip_id
        return current

    try:
        wait_for(lambda: state() is not None)
        assert state().schedule[0].clip_id == "test-llamas-000001"
        # A clip added to the playlist while on air goes on air next.
        upload_playlist(
            media_store,
            llama_channel,
            {1: broadcast_clips[0], 2: broadcast_clips[1], 3: broadcast_clips[2]},
        )
        wait_for(lambda: state().aired_through == 3)
        # Then the playlist is dry: recent clips air again, never dead air.
        wait_for(lambda: state() and len(seen) >= 5)
        subscriber.wait(timeout=60)
    finally:
        playout.stop.set()
        thread.join(timeout=60)
    aired = [clip for _, clip in sorted(seen.items())]
    # The playlist in order; the clip added on air; replays of real clips when it ran dry.
    assert aired[:2] == ["test-llamas-000001", "test-llamas-000002"]
    assert "test-llamas-000003" in aired
    assert len(aired) > 3 and all(clip.startswith("test-llamas-00000") for clip in aired)
    video = packet_times(recording, "video")
    steps = [b - a for a, b in zip(video, video[1:], strict=False)]
    assert video[-1] - video[0] > 10 and max(steps) <= FRAME + 0.002


def test_with_nothing_to_air_the_channel_shows_its_ident(
    rtmp_server, media_store, llama_channel, tmp_path
):
    import threading

    from webtv_dagster.media.ffmpeg import probe
    from webtv_dagster.playout.channel import ChannelPlayout, read_state
    from webtv_dagster.playout.state import PlayoutFolder
    from webtv_dagster.production.ident import make_ident, publish_ident

    # The pipeline made the ident (the channel_ident asset); the playout fetches and keeps it.
    publish_ident(media_store, llama_channel.slug, make_ident(llama_channel, tmp_path / "i.mp4"))
    url = rtmp_server.publish_url("test-llamas")
    playout = ChannelPlayout(media_store, llama_channel, url, tmp_path / "d", 2**20)
    thread = threading.Thread(target=playout.run)
    thread.start()
    try:
        wait_for(lambda: read_state(tmp_path / "d", "test-llamas") is not None, timeout=120)
    finally:
        playout.stop.set()
        thread.join(timeout=60)
    state = read_state(tmp_path / "d", "test-llamas")
    assert state.schedule[0].clip_id == "ident"
    assert state.on_air(now=state.schedule[0].starts_at + 1).clip_id == "ident"
    ident = probe(PlayoutFolder.of(tmp_path / "d", "test-llamas").ident)
    assert (ident.video.width, ident.video.frames) == (1024, 128)
    assert ident.audio.duration == pytest.approx(128 / 24, abs=1e-3)


def test_publishers_run_the_slim_ffmpeg_scripts_setup_builds(rtmp_server, tmp_path):
    """scripts/setup builds it beside the interpreter (scripts/build-publisher-ffmpeg): it links
    nothing but the C library, and a publisher runs it unless told another FFmpeg (the
    WEBTV_PUBLISHER_FFMPEG setting). Every publisher of the other tests airs through it."""
    slim = Path(sys.executable).parent / SLIM_PUBLISHER_FFMPEG
    assert default_publisher_ffmpeg() == str(slim), "run scripts/setup --for-tests"
    linked = subprocess.run(["ldd", str(slim)], capture_output=True, text=True, check=True)
    libraries = {Path(line.split()[0]).name for line in linked.stdout.splitlines()}
    assert libraries <= {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"}
    url = rtmp_server.publish_url("test-llamas")
    for given, runs in [(None, slim), ("ffmpeg", Path(shutil.which("ffmpeg")))]:
        publisher = Publisher(url, tmp_path / "publisher.log", ffmpeg=given)
        try:
            assert Path(f"/proc/{publisher.process.pid}/exe").resolve() == runs.resolve()
        finally:
            publisher.close()
