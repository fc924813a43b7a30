"""The dump button: a clip taken down while it airs leaves the stream at its next keyframe,
within 2 s, with the timeline continuous and no reconnect; one taken down while it waits,
prepared, never airs; neither airs again. Measured as a viewer sees it, on a real nginx-rtmp:
one RTMP subscriber notes when each packet arrives and its timestamp, another decodes the
picture (each clip is one solid colour)."""

import json
import os
import random
import signal
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.clips import ClipId
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.as_run import AsRunLog
from webtv_dagster.playout.channel import FEED_LEAD_SECONDS
from webtv_dagster.playout.playlist import Playlist, publish_playlist
from webtv_dagster.playout.publisher import (
    TIMELINE_START,
    keyframe_cuts,
    placed_at,
    remux_segment,
)
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.playout.takedowns import TakedownWatch, restore, take_down
from webtv_dagster.storage import StorageError

from .air_monitor import FRAME_MS, AirMonitor
from .conftest import upload_playlist, wait_for
from .test_playout_faults import SLUG, on_air

FRAMES = 192  # 8 s clips, as the channels air them
COLOURS = {
    "red": (255, 0, 0),
    "lime": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
}
NAMES = list(COLOURS)  # clip n is NAMES[n - 1]


@pytest.fixture(scope="module")
def eight_second_clips(tmp_path_factory):
    """Broadcast clips of 8 s, each one solid colour of COLOURS with a tone of its own."""
    folder = tmp_path_factory.mktemp("eight")
    for index, colour in enumerate(NAMES):
        picture, tone = f"color=c={colour}:s=1024x576:r=24", f"sine=f={440 + 110 * index}"
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                picture,
                "-frames:v",
                str(FRAMES),
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                str(folder / f"v{index}.mp4"),
            ],
            "video",
        )
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"{tone}:r=48000",
                "-t",
                "8",
                "-ac",
                "2",
                str(folder / f"m{index}.flac"),
            ],
            "tone",
        )
        normalize_clip(
            folder / f"v{index}.mp4",
            folder / f"m{index}.flac",
            FRAMES,
            folder / f"c{index}.mp4",
            BROADCAST_PROFILE,
        )
    return [folder / f"c{index}.mp4" for index in range(len(NAMES))]


def clip_key(number: int) -> str:
    return ClipId(channel=SLUG, number=number).key


def publish_eight_second_clips(store, channel, clips) -> None:
    upload_playlist(store, channel, {n: clip for n, clip in enumerate(clips, 1)})
    playlist = Playlist.model_validate(store.get_json(f"channels/{SLUG}/playlist.json"))
    entries = [e.model_copy(update={"duration_seconds": FRAMES / 24}) for e in playlist.entries]
    publish_playlist(store, playlist.model_copy(update={"entries": entries}))


class ColourWatcher:
    """An RTMP subscriber that decodes the picture: (arrival, colour name) of every frame."""

    def __init__(self, url: str):
        self.frames: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [
                "ffmpeg",
                "-loglevel",
                "quiet",
                "-fflags",
                "nobuffer",
                "-analyzeduration",
                "0",
                "-probesize",
                "32",
                "-i",
                url,
                "-map",
                "0:v",
                "-vf",
                "scale=1:1,format=rgb24",
                "-flush_packets",
                "1",
                "-f",
                "rawvideo",
                "-",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while len(pixel := self.process.stdout.read(3)) == 3:
            distance = {
                n: sum((a - b) ** 2 for a, b in zip(c, pixel, strict=True))
                for n, c in COLOURS.items()
            }
            self.frames.append((time.monotonic(), min(distance, key=distance.get)))

    def count(self, colour: str) -> int:
        return sum(1 for _, name in list(self.frames) if name == colour)

    def first(self, colour: str, since: float = 0.0) -> float | None:
        return next((t for t, name in list(self.frames) if name == colour and t >= since), None)

    def close(self):
        self.process.kill()
        self.process.wait()


@contextmanager
def watched_on_air(rtmp_server, store, channel, clips, data_dir):
    """The clips published, aired, and watched by both subscribers: (viewer, watcher, playout)."""
    publish_eight_second_clips(store, channel, clips)
    url = rtmp_server.publish_url(SLUG)
    watcher = ColourWatcher(url)
    try:
        with AirMonitor(url) as viewer, on_air(store, channel, rtmp_server, data_dir) as playout:
            yield viewer, watcher, playout
    finally:
        watcher.close()


def take_down_clip_2_after(seconds: float, store, data_dir):
    """Takes clip 2 down once it has been on air (by the playout's state) `seconds`; returns its
    schedule entry and when."""
    clip2 = wait_for(lambda: scheduled(data_dir, 2), 60, "clip 2 on air")
    time.sleep(max(0.0, clip2.starts_at + seconds - time.time()))
    pressed = time.monotonic()
    take_down(store, ClipId.parse(clip_key(2)), "a viewer complained")
    return clip2, pressed


def scheduled(data_dir, number: int):
    """Clip `number`'s latest entry in the playout's schedule, or None."""
    state = read_state(data_dir, SLUG)
    entries = [c for c in state.schedule if c.clip_id == clip_key(number)] if state else []
    return entries[-1] if entries else None


def takedown_record(data_dir, number: int):
    state = read_state(data_dir, SLUG)
    skips = [s for s in state.skipped if s.clip_id == clip_key(number)] if state else []
    return skips[-1] if skips and skips[-1].taken_down else None


def packets(data: bytes) -> list[dict]:
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,dts_time,flags",
            "-of",
            "json",
            "-i",
            "pipe:0",
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    return json.loads(probe.stdout)["packets"]


def test_segments_are_cut_at_every_keyframe_and_what_follows_goes_on_from_the_cut(
    eight_second_clips,
):
    segment = remux_segment(eight_second_clips[0], clip_key(1), "p", 3.0, 24)
    # A keyframe a second (the broadcast profile's), found in the MPEG-TS bytes.
    assert BROADCAST_PROFILE.keyframe_interval == 24
    assert [frames for _, frames in segment.cuts] == list(range(24, FRAMES, 24))
    assert keyframe_cuts(segment.data) == segment.cuts
    pieces = segment.pieces()
    assert [p.frames for p in pieces] == [24] * 8
    assert b"".join(p.data for p in pieces) == segment.data
    assert [p.stream_seconds for p in pieces] == [3.0 + n for n in range(8)]
    for piece in pieces:  # each piece starts with its keyframe, and holds its frames whole
        video = [p for p in packets(piece.data) if p["stream_index"] == 0]
        assert len(video) == 24 and video[0]["flags"].startswith("K")
    cut = segment.cut_after(72)
    assert (cut.frames, cut.end, cut.data) == (72, 6.0, segment.data[: segment.cuts[2][0]])
    assert segment.cut_after(0).data == b""
    # The next clip, prepared where clip 1 would have ended, is placed again at the cut: video
    # timestamps step one frame across the cut, audio ones never go back.
    following = remux_segment(eight_second_clips[1], clip_key(2), "p", segment.end, 24)
    placed = placed_at(following, cut.end)
    assert (placed.stream_seconds, placed.frames) == (6.0, FRAMES)
    joined = packets(cut.data + placed.data)
    video = [float(p["dts_time"]) for p in joined if p["stream_index"] == 0]
    audio = [float(p["dts_time"]) for p in joined if p["stream_index"] == 1]
    assert len(video) == 72 + FRAMES
    assert {round((b - a) * 24, 3) for a, b in zip(video, video[1:], strict=False)} == {1.0}
    assert all(b > a for a, b in zip(audio, audio[1:], strict=False))
    # Audio stops where the video's decoding does (the B-frame delay before the keyframe).
    at_cut = TIMELINE_START + cut.end
    assert at_cut - 0.15 < max(a for a in audio if a < at_cut)
    assert min(a for a in audio if a >= at_cut) == pytest.approx(at_cut)


def test_the_takedowns_are_read_again_only_when_they_change_and_kept_on_disk(media_store, tmp_path):
    copy = tmp_path / "takedowns.json"
    watch = TakedownWatch(media_store, SLUG, copy)
    assert watch.refresh() is False and watch.clips == {} and watch.answered.is_set()
    take_down(media_store, ClipId.parse(clip_key(7)), "wrong picture")
    assert watch.refresh() is True and watch.clips[clip_key(7)].reason == "wrong picture"
    # Unchanged: S3 answers 304 Not Modified, no body.
    assert media_store.get_bytes_if_changed(watch.key, watch.etag) is None
    assert watch.refresh() is False
    # A playout restarted while S3 is away still knows them; S3 errors leave them as known.
    away = MediaStore(media_store.bucket, "http://127.0.0.1:9", "us-east-1", "a", "b")
    restarted = TakedownWatch(away, SLUG, copy)
    assert list(restarted.clips) == [clip_key(7)]
    with pytest.raises(StorageError):
        restarted.refresh()
    assert list(restarted.clips) == [clip_key(7)] and restarted.answered.is_set()
    # Restored, then taken down again: a new take-down, known since it was seen.
    first_seen = watch.known_since[clip_key(7)]
    restore(media_store, ClipId.parse(clip_key(7)))
    assert watch.refresh() is True and watch.clips == {} == watch.known_since
    take_down(media_store, ClipId.parse(clip_key(7)), "wrong picture")
    assert watch.refresh() is True and watch.known_since[clip_key(7)] > first_seen


def test_a_clip_taken_down_on_air_is_cut_within_2_s_and_the_air_goes_on(
    rtmp_server, media_store, llama_channel, eight_second_clips, tmp_path
):
    data_dir = tmp_path / "data"
    with watched_on_air(rtmp_server, media_store, llama_channel, eight_second_clips, data_dir) as (
        viewer,
        watcher,
        playout,
    ):
        # Clip 2 on air for 2.8 s: dumped just after the feeder wrote its fourth second (a
        # keyframe a second, written FEED_LEAD_SECONDS before it airs), the worst moment.
        phase = 3 - FEED_LEAD_SECONDS + random.uniform(0.05, 0.2)
        clip2, pressed = take_down_clip_2_after(phase, media_store, data_dir)
        publisher = playout.publisher.process.pid
        cut = wait_for(lambda: takedown_record(data_dir, 2), 15, "the cut recorded")
        clip3 = wait_for(lambda: scheduled(data_dir, 3), 15, "clip 3 after the cut")
        # The first frame of clip 3 as the subscriber gets it: FLV timestamps are the
        # stream's position in ms, from the stream's first frame (this subscriber's first).
        origin = viewer.video()[0].dts_ms
        due = origin + clip3.stream_seconds * 1000 - FRAME_MS / 2
        first3 = wait_for(
            lambda: next((p for p in viewer.video() if p.dts_ms >= due), None),
            10,
            "clip 3's first frame",
        )
        # Clip 3 on air; clip 4 is prepared, queued behind it: taken down, it never airs.
        wait_for(lambda: time.time() > clip3.starts_at + 1, 10, "clip 3 on air")
        queued = wait_for(lambda: list(playout._segments.queue), 10, "clip 4 prepared")
        assert [s.clip_id for s in queued] == [clip_key(4)]
        take_down(media_store, ClipId.parse(clip_key(4)), "not for this hour")
        dropped = wait_for(lambda: takedown_record(data_dir, 4), 10, "clip 4 dropped")
        # Clip 1, aired before, is taken down too (a player seconds behind may show it).
        take_down(media_store, ClipId.parse(clip_key(1)), "wrong channel")
        aired1 = wait_for(lambda: takedown_record(data_dir, 1), 10, "clip 1 recorded")
        clip5 = wait_for(lambda: scheduled(data_dir, 5), 15, "clip 5 after clip 3")

        # The playlist is dry: replays of clips 3 and 5 only, never 1, 2 or 4.
        def replays() -> list:
            schedule = read_state(data_dir, SLUG).schedule
            return [c for c in schedule if c.stream_seconds > clip5.stream_seconds]

        wait_for(lambda: len(replays()) >= 2, 40, "two replays")
        wait_for(lambda: watcher.first(NAMES[2], first3.wall + 9), 20, "a replay on screen")
        same_publisher = playout.publisher.process.pid == publisher
    state = read_state(data_dir, SLUG)
    latency = first3.wall - pressed
    shown = watcher.first(NAMES[2], pressed)
    aired = clip3.stream_seconds - clip2.stream_seconds
    print(
        f"clip 2 cut after {aired:.1f} s; clip 3's first frame came {latency:.2f} s after the "
        f"take-down (decoded: {shown - pressed:.2f} s)"
    )
    assert latency < 2.0, f"clip 3 came {latency:.2f} s after the take-down"
    # Clip 2 aired in part: as long as the record and the schedule say, cut at a keyframe.
    assert aired < 8 - 1 and round(aired * 24) % 24 == 0
    # The state is public: it says what happened, not the operator's reason.
    assert cut.reason == f"taken down on air after {aired:.1f} s"
    assert "a viewer complained" not in PlayoutFolder.of(data_dir, SLUG).state.read_text()
    assert scheduled(data_dir, 2).duration_seconds == pytest.approx(aired)
    assert watcher.count(NAMES[1]) == pytest.approx(aired * 24, abs=1)
    # Clip 4 never aired; clip 5 starts where clip 3 ended.
    assert dropped.reason == "taken down" and watcher.count(NAMES[3]) == 0
    assert clip5.stream_seconds == pytest.approx(clip3.stream_seconds + 8)
    # None airs again: replays of clips 3 and 5 only.
    assert aired1.reason == "taken down after it aired"
    after = [c.clip_id for c in state.schedule if c.stream_seconds > clip3.stream_seconds]
    assert set(after) == {clip_key(3), clip_key(5)} and len(after) >= 3, after
    assert watcher.first(NAMES[1], first3.wall + 0.5) is None
    assert watcher.first(NAMES[0], first3.wall) is None
    # The timeline runs on, one frame a step (FLV: 41 or 42 ms), through the take-downs, from
    # one publisher over one subscriber connection.
    assert set(viewer.timestamp_steps()) <= {41, 42}, sorted(set(viewer.timestamp_steps()))
    assert same_publisher and state.publisher_restarts == 0 and viewer.connections == 1
    as_run_agrees_with_the_air(data_dir, state, viewer, watcher)


def as_run_agrees_with_the_air(data_dir, state, viewer, watcher) -> None:
    """The as-run log says what the subscribers received: each clip sent, where it was on the
    timeline (every frame of it, by its timestamps), when (its frames' arrival), and what it
    showed (its colour); the cut and the skip with their reasons; the guide the same clips."""
    log = AsRunLog(PlayoutFolder.of(data_dir, SLUG).as_run, days_kept=2)
    entries = [e for day in log.days() for e in log.entries(day)]
    sent = [e for e in entries if e.event != "skipped"]
    assert [(e.clip_id, e.event, e.origin) for e in sent[:4]] == [
        (clip_key(1), "aired", "new"),
        (clip_key(2), "cut", "new"),
        (clip_key(3), "aired", "new"),
        (clip_key(5), "aired", "new"),
    ]
    assert "a viewer complained" in sent[1].reason
    assert {(e.clip_id, e.origin) for e in sent[4:]} <= {
        (clip_key(3), "replay"),
        (clip_key(5), "replay"),
    }
    (skipped,) = [e for e in entries if e.event == "skipped"]  # clip 1's was after it aired
    assert skipped.clip_id == clip_key(4) and "not for this hour" in skipped.reason
    assert sent[0].stream_start == 0
    assert all(a.stream_end == b.stream_start for a, b in zip(sent, sent[1:], strict=False))
    # The guide lists the same clips, at the same places, as long.
    guide = {c.stream_seconds: c for c in state.schedule}
    for entry in sent:
        if entry.stream_start in guide:
            clip = guide.pop(entry.stream_start)
            assert (clip.clip_id, clip.duration_seconds) == pytest.approx(
                (entry.clip_id, entry.stream_end - entry.stream_start)
            )
    assert all(clip.stream_seconds >= sent[-1].stream_end for clip in guide.values())
    origin, unix = viewer.video()[0].dts_ms, time.time() - time.monotonic()
    for entry in sent:
        frames = round((entry.stream_end - entry.stream_start) * 24)
        first, last = (
            origin + t * 1000 - FRAME_MS / 2 for t in (entry.stream_start, entry.stream_end)
        )
        received = [p for p in viewer.video() if first <= p.dts_ms < last]
        assert len(received) == frames, (entry, len(received))
        # Sent in real time: its first and last frames arrived when the log says.
        assert received[0].wall + unix == pytest.approx(entry.started_at, abs=0.5)
        assert received[-1].wall + unix + 1 / 24 == pytest.approx(entry.ended_at, abs=0.5)
        if watcher.frames[0][0] + unix > entry.started_at - 0.5:
            continue  # the decoding subscriber was still starting
        colour = NAMES[ClipId.parse(entry.clip_id).number - 1]
        shown = [
            name
            for arrived, name in watcher.frames
            if entry.started_at - 0.5 <= arrived + unix <= entry.ended_at + 0.5
        ]
        assert shown.count(colour) == pytest.approx(frames, abs=2), entry


def test_a_publisher_killed_just_after_a_cut_goes_on_after_the_cut(
    rtmp_server, media_store, llama_channel, eight_second_clips, tmp_path
):
    data_dir = tmp_path / "data"
    with watched_on_air(
        rtmp_server, media_store, llama_channel, eight_second_clips[:3], data_dir
    ) as (viewer, watcher, playout):
        clip2, _ = take_down_clip_2_after(2.5, media_store, data_dir)
        wait_for(lambda: takedown_record(data_dir, 2), 15, "the cut recorded")
        # The dead publisher had the cut clip's last second or so, maybe clip 3's first.
        first = playout.publisher.process.pid
        killed_at = time.monotonic()
        os.kill(first, signal.SIGKILL)
        clip3 = wait_for(lambda: scheduled(data_dir, 3), 15, "clip 3 after the cut")
        wait_for(lambda: watcher.first(NAMES[2], killed_at), 15, "clip 3 on screen")
        time.sleep(3)
        replacement = playout.publisher.process.pid
    state = read_state(data_dir, SLUG)
    assert replacement != first and state.publisher_restarts == 1
    # Clip 3 goes on where clip 2 was cut, never over it: timestamps step forward once, by what
    # the dead publisher had not sent (at most a keyframe interval and the feeder's lead).
    aired = clip3.stream_seconds - clip2.stream_seconds
    assert aired < 8 - 1 and scheduled(data_dir, 2).duration_seconds == pytest.approx(aired)
    steps = viewer.timestamp_steps()
    print(f"clip 2 cut after {aired:.1f} s; the new publisher stepped {max(steps)} ms")
    assert min(steps) > 0 and viewer.connections == 1
    assert all(step < (1 + FEED_LEAD_SECONDS) * 1000 + FRAME_MS for step in steps), max(steps)
    assert watcher.count(NAMES[1]) <= aired * 24  # clip 2 was not sent again
    assert [s.clip_id for s in state.skipped if s.taken_down] == [clip_key(2)]
    assert (state.clips_skipped, state.clips_taken_down) == (1, 1)  # what the metrics count
