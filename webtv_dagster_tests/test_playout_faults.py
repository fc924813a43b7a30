"""Faults on the air path, caused for real and measured as a viewer sees them: an RTMP
subscriber counts the wall-clock seconds without a new frame and checks the timestamps."""

import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

from webtv_dagster.clips import ClipId
from webtv_dagster.playout.as_run import AsRunLog
from webtv_dagster.playout.channel import ChannelPlayout
from webtv_dagster.playout.playlist import Playlist, PlaylistEntry, publish_playlist
from webtv_dagster.playout.publisher import PROGRESS_PERIOD
from webtv_dagster.playout.state import PlayoutFolder, read_state

from .air_monitor import FRAME_MS, AirMonitor
from .conftest import upload_playlist, wait_for

SLUG = "test-llamas"
CLIP_SECONDS = 64 / 24


@contextmanager
def on_air(store, channel, rtmp_server, data_dir):
    playout = ChannelPlayout(
        store, channel, rtmp_server.publish_url(SLUG), data_dir, cache_bytes=2**28
    )
    thread = threading.Thread(target=playout.run)
    thread.start()
    try:
        yield playout
    finally:
        playout.shutdown()
        thread.join(timeout=30)
    assert not thread.is_alive()


def air_until(clip_id, store, channel, rtmp_server, data_dir) -> tuple[AirMonitor, float]:
    """Airs the channel, watched, until `clip_id` has aired; returns the watcher and the
    longest time without a frame once frames flowed."""
    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        with on_air(store, channel, rtmp_server, data_dir):
            viewer.wait_for_frames(5)
            started = time.monotonic()
            wait_for(lambda: clip_id in aired_clips(data_dir), 60, f"{clip_id} on air")
            time.sleep(CLIP_SECONDS)
    return viewer, viewer.longest_gap(started, viewer.video()[-1].wall)


def clip_key(number: int) -> str:
    return ClipId(channel=SLUG, number=number).key


def aired_clips(data_dir) -> list[str]:
    state = read_state(data_dir, SLUG)
    return [clip.clip_id for clip in state.schedule] if state else []


def test_a_killed_publisher_is_replaced_at_once_and_the_timeline_goes_on(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
    data_dir = tmp_path / "data"
    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        with on_air(media_store, llama_channel, rtmp_server, data_dir) as playout:
            viewer.wait_for_frames(24 * 4)
            first = playout.publisher.process.pid
            killed_at = time.monotonic()
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: len(viewer.video(killed_at)) > 24 * 5, 30, "frames after the kill")
            replacement = playout.publisher.process.pid
        off_air = viewer.longest_gap(killed_at - 1, viewer.video(killed_at)[24 * 5].wall)
    assert replacement != first and playout.publisher_restarts == 1
    assert off_air < 2.0, f"{off_air:.1f} s without a frame"
    steps = viewer.timestamp_steps()
    # Timestamps never go back; they step forward once, across the restart, by what the dead
    # publisher had buffered and not sent (at most about a clip).
    assert min(steps) > 0
    (jump,) = viewer.steps_over_one_frame()
    assert jump < 2 * CLIP_SECONDS * 1000
    assert viewer.connections == 1  # the subscriber stayed connected through it
    state = read_state(data_dir, SLUG)
    assert state.publisher_restarts == 1 and state.skipped == []


@pytest.mark.parametrize("reader", ["MediaStore", "S3Reader"])
def test_a_corrupt_or_truncated_cached_clip_is_fetched_again_and_airs(
    rtmp_server, media_store, seaweedfs, llama_channel, broadcast_clips, tmp_path, reader
):
    """Either client of the bucket (the playout process reads through S3Reader)."""
    from webtv_dagster.storage import S3Reader

    from .conftest import ACCESS_KEY, SECRET_KEY

    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 5)})
    store = media_store
    if reader == "S3Reader":
        store = S3Reader(
            media_store.bucket, seaweedfs.endpoint_url, "us-east-1", ACCESS_KEY, SECRET_KEY
        )
    data_dir = tmp_path / "data"
    cache = PlayoutFolder.of(data_dir, SLUG).cache
    cache.mkdir(parents=True)
    # A disk fault: clip 2's cached copy is garbage, clip 3's lost its second half.
    (cache / f"{SLUG}-000002.mp4").write_bytes(os.urandom(broadcast_clips[2].stat().st_size))
    good = broadcast_clips[3].read_bytes()
    (cache / f"{SLUG}-000003.mp4").write_bytes(good[: len(good) // 2])
    viewer, off_air = air_until(f"{SLUG}-000004", store, llama_channel, rtmp_server, data_dir)
    assert aired_clips(data_dir)[:4] == [f"{SLUG}-00000{n}" for n in range(1, 5)]
    assert read_state(data_dir, SLUG).skipped == []
    assert off_air < 1.0
    assert viewer.steps_over_one_frame() == [] and min(viewer.timestamp_steps()) > 0
    assert (cache / f"{SLUG}-000003.mp4").read_bytes() == good


def test_a_clip_bad_in_s3_is_skipped_with_its_reason_and_the_air_goes_on(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 6)})
    playlist = Playlist.model_validate(media_store.get_json(f"channels/{SLUG}/playlist.json"))
    # Clip 2's object in S3 is not what its record describes (a disk fault in the bucket);
    # clip 3's object matches its record but is half a clip (a record made from a bad file).
    clip2 = ClipId(channel=SLUG, number=2).object_key("broadcast.mp4")
    media_store.put_bytes(clip2, os.urandom(50_000), "video/mp4")
    half = tmp_path / "half.mp4"
    half.write_bytes(broadcast_clips[3].read_bytes()[:30_000])
    stored = media_store.upload_file(
        half, ClipId(channel=SLUG, number=3).object_key("broadcast.mp4"), "video/mp4"
    )
    entries: list[PlaylistEntry] = list(playlist.entries)
    entries[2] = entries[2].model_copy(
        update={"size_bytes": stored.size_bytes, "sha256": stored.sha256}
    )
    publish_playlist(media_store, playlist.model_copy(update={"entries": entries}))

    data_dir = tmp_path / "data"
    viewer, off_air = air_until(f"{SLUG}-000005", media_store, llama_channel, rtmp_server, data_dir)
    state = read_state(data_dir, SLUG)
    assert [clip.clip_id for clip in state.schedule][:3] == [
        f"{SLUG}-000001",
        f"{SLUG}-000004",
        f"{SLUG}-000005",
    ]
    reasons = {skip.clip_id: skip.reason for skip in state.skipped}
    assert (state.clips_skipped, state.clips_taken_down) == (2, 0)  # what the metrics count
    assert "bytes where its record says" in reasons[f"{SLUG}-000002"]
    assert "frames where its record says 64" in reasons[f"{SLUG}-000003"] or (
        "cannot remux" in reasons[f"{SLUG}-000003"]
    )
    assert off_air < 1.0
    # The timeline advanced by what aired: no jump where the bad clips were.
    assert viewer.steps_over_one_frame() == [] and min(viewer.timestamp_steps()) > 0


@pytest.fixture
def own_seaweedfs(tmp_path):
    """A SeaweedFS of this test's own, free to be hung."""
    from webtv_dagster.media_store import MediaStore
    from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
    from webtv_dagster_tests.servers import free_port_block, start_embedded_s3

    from .conftest import ACCESS_KEY, SECRET_KEY

    port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    server = start_embedded_s3(tmp_path / "weed", port, "media", ACCESS_KEY, SECRET_KEY)
    store = MediaStore("media", server.endpoint_url, "us-east-1", ACCESS_KEY, SECRET_KEY)
    yield server, store
    os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_a_hung_s3_never_stops_the_air(
    rtmp_server, own_seaweedfs, llama_channel, broadcast_clips, tmp_path
):
    server, store = own_seaweedfs
    upload_playlist(store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 4)})
    data_dir = tmp_path / "data"
    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        with on_air(store, llama_channel, rtmp_server, data_dir):
            viewer.wait_for_frames(24)
            os.kill(server.process.pid, signal.SIGSTOP)
            hung_at = time.monotonic()
            time.sleep(20)  # clips 2 and 3 from the cache, then replays
            os.kill(server.process.pid, signal.SIGCONT)
            off_air = viewer.longest_gap(hung_at)
            # Once S3 answers again, a clip added meanwhile goes on air.
            upload_playlist(store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 5)})
            wait_for(lambda: f"{SLUG}-000004" in aired_clips(data_dir), 90, "clip 4 on air")
    assert off_air < 1.0, f"{off_air:.1f} s without a frame while S3 hung"
    assert viewer.steps_over_one_frame() == [] and min(viewer.timestamp_steps()) > 0
    assert max(step for step in viewer.timestamp_steps()) <= FRAME_MS + 1


def test_a_hung_rtmp_server_is_waited_out_and_the_air_resumes_by_itself(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    import subprocess

    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
    data_dir = tmp_path / "data"
    nginx = [str(rtmp_server.process.pid)]
    workers = subprocess.run(["pgrep", "-P", nginx[0]], capture_output=True, text=True)
    nginx += workers.stdout.split()
    with on_air(media_store, llama_channel, rtmp_server, data_dir) as playout:
        wait_for(lambda: playout.publisher and playout.publisher.sent_seconds > 3, 60, "on air")
        for pid in nginx:
            os.kill(int(pid), signal.SIGSTOP)
        time.sleep(10)  # the publisher's socket fills; it sends nothing: it is replaced
        for pid in nginx:
            os.kill(int(pid), signal.SIGCONT)
        resumed_at = time.monotonic()
        with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
            viewer.wait_for_frames(24, timeout=30)
        back_after = viewer.video()[0].wall - resumed_at
        assert playout.publisher_restarts >= 1
    assert back_after < 10, f"frames came back {back_after:.1f} s after the server woke"


KEYFRAME_MS = 1000  # the broadcast profile's keyframe interval
# The most air a death may cost: up to the next keyframe, from what the publisher may have
# sent since its last report (PROGRESS_PERIOD), and the frame itself.
MOST_LOST_MS = KEYFRAME_MS + PROGRESS_PERIOD * 1000 + FRAME_MS + 1


def just_into_a_clip(sent_through: float, schedule) -> bool:
    """Whether air is a moment into a clip: a death now, skipping the rest of the clip (as the
    playout once did), would cost seconds."""
    current = [clip for clip in schedule if clip.stream_seconds <= sent_through]
    return bool(current) and 0.15 < sent_through - current[-1].stream_seconds < 0.4


def test_air_resumes_at_the_first_keyframe_not_sent_after_a_publisher_death(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
    data_dir = tmp_path / "data"
    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        with on_air(media_store, llama_channel, rtmp_server, data_dir) as playout:
            viewer.wait_for_frames(24 * 3)
            wait_for(
                lambda: just_into_a_clip(playout.publisher.sent_through, playout._schedule),
                30,
                "air a moment into a clip",
            )
            killed_at = time.monotonic()
            os.kill(playout.publisher.process.pid, signal.SIGKILL)
            wait_for(lambda: len(viewer.video(killed_at)) > 24 * 4, 30, "frames after the kill")
    assert min(viewer.timestamp_steps()) > 0  # nothing sent twice
    (jump,) = viewer.steps_over_one_frame()
    assert jump <= MOST_LOST_MS, f"{jump} ms of the stream skipped"
    assert read_state(data_dir, SLUG).skipped == []


def test_a_restarted_playout_resumes_in_the_clip_the_killed_one_was_airing(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path, monkeypatch, seaweedfs
):
    import json

    from webtv_dagster.playout.process import playout_status
    from webtv_dagster.stack.playouts import launch_playout

    from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS

    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
    data_dir = tmp_path / "data"
    for variable, value in {
        "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS),
        "WEBTV_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "WEBTV_S3_BUCKET": media_store.bucket,
        "WEBTV_RTMP_PORT": str(rtmp_server.rtmp_port),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }.items():
        monkeypatch.setenv(variable, value)
    folder = PlayoutFolder.of(data_dir, SLUG)

    def air_a_moment_into_a_clip() -> bool:
        state = read_state(data_dir, SLUG)
        try:
            sent = json.loads(folder.progress.read_text())["sent_through"]
        except (OSError, ValueError):
            return False
        return state is not None and just_into_a_clip(sent, state.schedule)

    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        first = launch_playout(data_dir, SLUG)
        try:
            viewer.wait_for_frames(24 * 3)
            wait_for(air_a_moment_into_a_clip, 30, "air a moment into a clip")
            first.kill()  # SIGKILL: its publisher dies with it
            first.wait()
            killed_at, killed_unix = time.monotonic(), time.time()
            second = launch_playout(data_dir, SLUG)  # what supervisord does
            wait_for(lambda: len(viewer.video(killed_at)) > 24 * 4, 60, "frames after it")
        finally:
            for process in (first, locals().get("second")):
                if process is not None:
                    process.kill()
                    process.wait()
        assert not playout_status(data_dir, SLUG).running
    assert min(viewer.timestamp_steps()) > 0  # nothing sent twice
    (jump,) = viewer.steps_over_one_frame()
    assert jump <= MOST_LOST_MS, f"{jump} ms of the stream skipped"
    # The as-run log both playouts wrote: each clip once, one after the other on the timeline,
    # the one the kill interrupted among them (written by the second, the time off air in it).
    log = AsRunLog(folder.as_run, 2)
    sent = [entry for day in log.days() for entry in log.entries(day)]
    assert sent[0].stream_start == 0
    assert all(a.stream_end == b.stream_start for a, b in zip(sent, sent[1:], strict=False))
    assert any(e.started_at < killed_unix < e.ended_at for e in sent), sent


def test_a_restart_finds_the_clip_airing_by_the_publishers_last_report(
    media_store, llama_channel, tmp_path
):
    """On a busy machine a playout may queue the next clip before its publisher reports the
    one before: a playout restarted then resumes the clip the report was in, and the clip
    queued after it airs again (it was never sent), rather than skipping both."""
    import json

    from webtv_dagster.playout.state import PlayoutState, ScheduledClip, write_state

    data_dir = tmp_path / "data"
    folder = PlayoutFolder.of(data_dir, SLUG)
    folder.path.mkdir(parents=True)
    schedule = [
        ScheduledClip(
            clip_id=f"{SLUG}-{number:06d}",
            prompt=f"prompt {number}",
            duration_seconds=CLIP_SECONDS,
            starts_at=1000.0 + number * CLIP_SECONDS,
            stream_seconds=(number - 1) * CLIP_SECONDS,
        )
        for number in (1, 2, 3)
    ]
    write_state(
        data_dir,
        PlayoutState(
            channel=SLUG,
            title=llama_channel.title,
            publisher_started_at=1000.0,
            updated_at=1010.0,
            aired_through=3,
            unplayed_seconds=0.0,
            schedule=schedule,
            up_next=[],
        ),
    )
    into_the_second = CLIP_SECONDS + 0.2
    folder.progress.write_text(
        json.dumps({"sent_through": into_the_second, "written_through": 3 * CLIP_SECONDS})
    )
    playout = ChannelPlayout(
        media_store, llama_channel, "rtmp://127.0.0.1:1/none", data_dir, cache_bytes=2**20
    )
    assert playout.interrupted == schedule[1]
    assert playout.aired_through == 2  # the third clip airs again
    assert playout._schedule == schedule[:2]
    assert playout._next_stream_seconds == pytest.approx(2 * CLIP_SECONDS)


def test_a_cued_clip_airs_next_and_the_playlist_goes_on_where_it_was(
    rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    """An operator's play-next (sources.cue_clip): a replay, and a clip ahead of its turn, each
    airs after the clip being prepared; neither moves the channel's place in its playlist."""
    from webtv_dagster.playout.sources import cue_clip

    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
    data_dir = tmp_path / "data"
    with AirMonitor(rtmp_server.publish_url(SLUG)) as viewer:
        with on_air(media_store, llama_channel, rtmp_server, data_dir):
            wait_for(lambda: clip_key(3) in aired_clips(data_dir), 60, "clip 3 on air")
            cue_clip(data_dir, SLUG, clip_key(1))
            wait_for(lambda: aired_clips(data_dir).count(clip_key(1)) == 2, 30, "clip 1 again")
            cue_clip(data_dir, SLUG, clip_key(11))
            wait_for(lambda: clip_key(11) in aired_clips(data_dir), 30, "clip 11 cued")
            after = aired_clips(data_dir).index(clip_key(11))
            wait_for(lambda: len(aired_clips(data_dir)) > after + 1, 30, "the clip after it")
            state = read_state(data_dir, SLUG)
    aired = [clip.clip_id for clip in state.schedule]
    numbers = [ClipId.parse(c).number for c in aired]
    # In playlist order, but for the two cued clips, each right where it was asked.
    cued = [n for n, clip in zip(numbers, state.schedule, strict=True) if clip.origin == "cued"]
    assert cued == [1, 11], aired
    in_order = [n for n, clip in zip(numbers, state.schedule, strict=True) if clip.origin == "new"]
    assert in_order == list(range(in_order[0], in_order[0] + len(in_order))), aired
    assert numbers[numbers.index(11) + 1] < 11 and state.aired_through < 11
    assert not PlayoutFolder.of(data_dir, SLUG).cue.exists()  # each cue done once
    log = AsRunLog(PlayoutFolder.of(data_dir, SLUG).as_run, 2)
    origins = {(e.clip_id, e.origin) for day in log.days() for e in log.entries(day)}
    assert (clip_key(1), "cued") in origins
    assert min(viewer.timestamp_steps()) > 0 and viewer.connections == 1
