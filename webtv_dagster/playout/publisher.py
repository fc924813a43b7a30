"""The FFmpeg publisher of a channel, fed clip after clip by stream copy, and the remux that
turns each clip into a segment of the channel's timeline.

Each clip is remuxed (no re-encoding) into MPEG-TS with its timestamps shifted to where the
previous clip ended, and written into the publisher's input; the publisher paces the stream to
real time (`-re`) and copies it to FLV over RTMP. Because every broadcast clip has exactly
64-frame-aligned video and audio of the same length, the timeline stays continuous: video DTS
steps by one frame and audio DTS never goes back at clip boundaries. Two details make that so:
each clip's AAC priming packet (negative timestamp) is dropped, and the timeline starts at
TIMELINE_START rather than 0 so that no clip's B-frame delay pushes a DTS below zero (the TS
muxer would then shift that clip alone).

A segment is written piece by piece, one keyframe to the next, so that a clip taken down while
it airs can be left at its next keyframe; what follows is remuxed again to start where it
stopped (`placed_at`), so the timeline stays continuous.

The stream's FLV timestamps are its timeline folded every FLV_FOLD_SECONDS: at the first clip
past a fold the publisher sends all it was given and a new one starts from 0 again.

A publisher can die (killed, frozen, or its RTMP server gone). The playout then starts another
at the first keyframe the dead one cannot have sent (its last progress report, and what it can
have sent since), with `-output_ts_offset` set to that keyframe's place on the timeline, so
the stream's timestamps go on from where the last one stopped: RTMP subscribers and nginx's
HLS see a forward step of at most a keyframe interval (a second), never a reset. A restarted
playout resumes the same way, after what the last one had written to its publisher.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from webtv_dagster.media.ffmpeg import MediaToolError
from webtv_dagster.media.stream import (
    default_publisher_ffmpeg,
    remux_to_ts,
    start_rtmp_publisher,
)

TIMELINE_START = 10.0
# The timestamps on the wire restart from 0 every FLV_FOLD_SECONDS of the timeline (24.30 days):
# FFmpeg writes FLV timestamps in 31 bits of milliseconds, which would wrap by themselves after
# 24.86 days, and there nginx's HLS timestamps (its RTMP ones times 90, in 33 bits) would jump
# by half their range, which hls.js cannot follow (it stalls). Folding at a whole number of
# MPEG-TS wraps keeps HLS timestamps continuous; RTMP subscribers see one step back.
MPEG_TS_WRAP_SECONDS = 2**33 / 90_000  # 26.5 hours
FLV_FOLD_SECONDS = (2**31 / 1000 // MPEG_TS_WRAP_SECONDS) * MPEG_TS_WRAP_SECONDS
PROGRESS_PERIOD = 0.25  # seconds between the publisher's progress reports
# A new publisher starts FFmpeg, probes its input and connects before its first report: on a
# busy machine, seconds.
START_SECONDS = 5.0


TS_PACKET = 188
WAIT_SLICE = 0.05  # how often a feeder waiting for the publisher looks whether to stop waiting


def _pes_starts(data: bytes):
    """Each TS packet of `data` that starts a PES packet: its offset, and whether it starts a
    video keyframe (random_access_indicator) or another video frame (None: not video)."""
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        sync, flags, _, control = data[offset : offset + 4]
        if sync != 0x47 or not flags & 0x40:
            continue  # not a packet that starts a PES
        payload, random_access = offset + 4, False
        if control & 0x20:  # an adaptation field
            length = data[offset + 4]
            random_access = length > 0 and bool(data[offset + 5] & 0x40)
            payload += 1 + length
        if not control & 0x10 or payload + 4 > offset + TS_PACKET:
            continue  # no payload
        if data[payload : payload + 3] == b"\x00\x00\x01":
            video = 0xE0 <= data[payload + 3] <= 0xEF
            yield offset, (random_access if video else None)


def stream_tables(data: bytes) -> bytes:
    """The packets before MPEG-TS `data`'s first PES (the muxer's SDT, PAT and PMT): what a
    new publisher reads first to find the streams, put before a segment's rest."""
    return data[: next((offset for offset, _ in _pes_starts(data)), 0)]


def keyframe_cuts(data: bytes) -> tuple[tuple[int, int], ...]:
    """Where MPEG-TS `data` (one clip, as FFmpeg's muxer writes it) can be cut: for each video
    keyframe after the first, the byte offset of its first TS packet and the video frames before
    it. FFmpeg flags a keyframe's first packet (random_access_indicator) and writes each PES
    packet (one video frame, or one audio frame: the remux's `-muxdelay 0`) contiguously, so the
    bytes before the offset are whole frames."""
    cuts, frames = [], 0
    for offset, keyframe in _pes_starts(data):
        if keyframe is None:
            continue  # audio
        if keyframe and frames:  # a video PES (one frame) that starts a keyframe
            cuts.append((offset, frames))
        frames += 1
    return tuple(cuts)


@dataclass(frozen=True)
class Segment:
    """One clip remuxed for air: MPEG-TS bytes placed on the channel's timeline."""

    clip_id: str
    prompt: str
    stream_seconds: float  # where it starts on the stream (0: the channel's first frame)
    frames: int
    fps: int
    data: bytes
    source: Path | None = None  # the clip file, to place it elsewhere on the timeline
    cuts: tuple[tuple[int, int], ...] = ()  # (byte offset, frames before): its keyframes
    origin: str = ""  # what the as-run log says of it (sources.Pick.origin)
    requested_by: str | None = None

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def end(self) -> float:
        return self.stream_seconds + self.duration

    def pieces(self) -> list[Segment]:
        """The segment cut at each keyframe: pieces the feeder sends one by one, so that a clip
        taken down on air stops at its next keyframe."""
        bounds = [(0, 0), *self.cuts, (len(self.data), self.frames)]
        return [
            replace(
                self,
                stream_seconds=self.stream_seconds + before / self.fps,
                frames=through - before,
                data=self.data[start:end],
                cuts=(),
            )
            for (start, before), (end, through) in itertools.pairwise(bounds)
        ]

    def rest_from(self, stream_seconds: float) -> Segment | None:
        """What is left of the segment from its first keyframe at or after `stream_seconds`,
        readable by a new publisher (the stream tables first): where air resumes after a
        publisher or playout that sent the segment up to there died. None: no keyframe is
        left."""
        starts = [(0, 0), *self.cuts]
        left = [
            (o, b) for o, b in starts if self.stream_seconds + b / self.fps >= stream_seconds - 1e-6
        ]
        if not left:
            return None
        offset, before = left[0]
        if not before:
            return self
        tables = stream_tables(self.data)
        return replace(
            self,
            stream_seconds=self.stream_seconds + before / self.fps,
            frames=self.frames - before,
            data=tables + self.data[offset:],
            source=None,  # not the whole clip any more
            cuts=tuple((cut - offset + len(tables), frames - before) for cut, frames in left[1:]),
        )

    def cut_after(self, frames: int) -> Segment:
        """The segment's first `frames` frames (0, or a cut point): what aired of it when its
        clip was taken down."""
        offsets = {0: 0, **{before: offset for offset, before in self.cuts}}
        if frames not in offsets:
            raise ValueError(f"{self.clip_id} has no keyframe after {frames} frames")
        cuts = tuple(cut for cut in self.cuts if cut[1] < frames)
        return replace(self, frames=frames, data=self.data[: offsets[frames]], cuts=cuts)


def remux_segment(
    clip: Path, clip_id: str, prompt: str, stream_seconds: float, fps: int
) -> Segment:
    """Remuxes `clip` to MPEG-TS starting at `stream_seconds` and counts the video frames that
    came out, which is the segment's real length: a truncated or damaged file yields fewer
    frames (or an error), never a length taken on trust from a record."""
    data, frames = remux_to_ts(clip, TIMELINE_START + stream_seconds)
    return Segment(clip_id, prompt, stream_seconds, frames, fps, data, clip, keyframe_cuts(data))


def fold_of(stream_seconds: float) -> int:
    """How many times the timestamps on the wire have restarted by this point of the timeline."""
    return int(stream_seconds // FLV_FOLD_SECONDS)


def placed_at(segment: Segment, stream_seconds: float) -> Segment:
    """The segment remuxed again to start at `stream_seconds` (after a cut moved the timeline
    back); the same segment when it starts there already."""
    if abs(segment.stream_seconds - stream_seconds) < 1e-6:
        return segment
    if segment.source is None:
        raise MediaToolError(f"{segment.clip_id} cannot be placed again: its file is not known")
    placed = remux_segment(
        segment.source, segment.clip_id, segment.prompt, stream_seconds, segment.fps
    )
    return replace(placed, origin=segment.origin, requested_by=segment.requested_by)


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: a forked child only calls it
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: the kernel kills it when the playout that started it dies, so a killed
    playout never leaves a publisher holding the channel's stream name."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)
CLIP_BUFFER_THRESHOLD = 128 * 1024


def keep_clip_buffers_off_the_heap() -> None:
    """Fixes glibc's mmap threshold at its default (128 KiB) for this process: a segment's
    megabytes then always get a mapping of their own, returned whole to the system when freed.
    glibc otherwise raises the threshold to the size of the first such block freed, and every
    later segment lands on the heap, which fragments and keeps growing resident memory
    (benchmarks/segment_churn.py)."""
    _LIBC.mallopt(M_MMAP_THRESHOLD, CLIP_BUFFER_THRESHOLD)


def give_free_pages_back() -> None:
    """Returns every whole free page of glibc's heaps to the system: glibc by itself only trims
    the top of the main heap, so pages freed below a live block, and in the arenas of the
    playout's other threads, stay resident. Called once a clip (a few milliseconds)."""
    _LIBC.malloc_trim(0)


class PublisherDied(ConnectionError):
    """The publisher exited (killed, refused by the RTMP server, connection lost)."""


class Publisher:
    """An FFmpeg process that stays connected to its outputs while segments are appended.

    `stream_seconds` is where its first segment sits on the channel's timeline: its output
    timestamps start there. Its progress reports say how far it has sent, which tells a dead
    publisher's unsent segments from the ones viewers saw, and a stalled one from a live one.
    """

    def __init__(
        self,
        url: str,
        log_path: Path,
        stream_seconds: float = 0.0,
        on_progress: Callable[[float], None] | None = None,
        ffmpeg: str | None = None,
    ):
        self.url = url
        self.on_progress = on_progress  # hears sent_through at each report that moved on
        self.log_path = log_path
        self.first_stream_seconds = stream_seconds
        self.fold = fold_of(stream_seconds)  # its timestamps are the timeline less this many folds
        self.started_at: float | None = None  # wall time its first segment was written
        self.sent_seconds = 0.0  # how much of the stream it has sent since it started
        self.written_through = stream_seconds  # the end of the last segment given to it
        self.last_progress = time.monotonic()
        self._lock = threading.Lock()
        self._progressed = threading.Condition()
        self.process = start_rtmp_publisher(
            ffmpeg or default_publisher_ffmpeg(),
            url,
            stream_seconds - self.fold * FLV_FOLD_SECONDS,
            PROGRESS_PERIOD,
            preexec_fn=_die_with_parent,
        )
        self._logger = threading.Thread(
            target=_copy_log, args=(self.process.stderr, log_path), daemon=True
        )
        self._logger.start()
        threading.Thread(target=self._read_progress, daemon=True).start()

    def _read_progress(self) -> None:
        for raw in self.process.stdout:
            if raw.startswith(b"out_time_us="):
                with contextlib.suppress(ValueError):
                    sent = int(raw[12:]) / 1e6
                    if sent > self.sent_seconds:
                        with self._progressed:
                            self.sent_seconds = sent
                            self.last_progress = time.monotonic()
                            self._progressed.notify_all()
                        if self.on_progress is not None:
                            self.on_progress(self.sent_through)
        with self._progressed:  # it exited: nobody waits for more
            self._progressed.notify_all()

    @property
    def sent_through(self) -> float:
        """The stream position up to which this publisher has sent (at its last report)."""
        return self.first_stream_seconds + self.sent_seconds

    def may_have_sent_through(self) -> float:
        """The furthest stream position it may have sent: its last report, plus what it can
        have sent since (it reports every PROGRESS_PERIOD, pacing to real time). Resuming after
        this never sends a frame twice."""
        since = min(time.monotonic() - self.last_progress, PROGRESS_PERIOD)
        return min(self.sent_through + since, self.written_through)

    def wall_time_of(self, stream_seconds: float) -> float:
        """When this publisher sends the frame at `stream_seconds` (it paces to real time)."""
        started = self.started_at if self.started_at is not None else time.time()
        return started + stream_seconds - self.first_stream_seconds

    def sending_at(self) -> float:
        """Where on the timeline it is sending now: its last progress report, moved on by the
        time since (it paces to real time). It reports only between reads, so a report goes
        stale while it waits for input; the wall clock does not."""
        if self.sent_seconds <= 0:
            return self.sent_through
        ahead = time.monotonic() - self.last_progress
        return min(self.sent_through + ahead, self.written_through)

    def wait_until_sending(self, stream_seconds: float, interrupted: Callable[[], bool]) -> None:
        """Returns once it sends at `stream_seconds` (sending_at), has exited, or `interrupted()`
        (asked every WAIT_SLICE): a feeder that waits for this stays a bounded time ahead of the
        air whatever the bitrate (a pipe holds 64 KB: seconds of a still picture). Before it
        sends anything (it reads the start of its input to find the streams, connects) it does
        not wait."""
        with self._progressed:
            while (
                self.sent_seconds > 0
                and (behind := stream_seconds - self.sending_at()) > 0
                and self.process.poll() is None
                and not interrupted()
            ):
                self._progressed.wait(min(behind, WAIT_SLICE))

    def send(self, segment: Segment, waiting: Callable[[], None] = lambda: None) -> None:
        """Appends the segment to the stream; returns once it is queued (the pipe paces this to
        real time), calling `waiting()` every WAIT_SLICE while the pipe is full (a publisher
        starting up reads nothing for seconds: its feeder waits, and is not hung). Raises
        PublisherDied with the publisher's last words if it is gone."""
        with self._lock:
            try:
                if self.process.poll() is not None:
                    raise BrokenPipeError
                if self.started_at is None:
                    self.started_at = time.time()
                    self.last_progress = time.monotonic()
                self.written_through = segment.end
                self._write(memoryview(segment.data), waiting)
            except (BrokenPipeError, ValueError):  # ValueError: stdin closed by kill()
                raise PublisherDied(self._exit_reason()) from None

    def _write(self, data: memoryview, waiting: Callable[[], None]) -> None:
        pipe = self.process.stdin.fileno()
        os.set_blocking(pipe, False)  # what fits now, then wait for room a slice at a time
        while data:
            if self.process.poll() is not None:
                raise BrokenPipeError
            try:
                data = data[os.write(pipe, data) :]
            except BlockingIOError:
                if not select.select([], [pipe], [], WAIT_SLICE)[1]:
                    waiting()

    def stalled(self, after_seconds: float) -> bool:
        """Whether it has data to send but has sent nothing for `after_seconds`, or for
        START_SECONDS before its first report (its RTMP server hangs, or the handshake never
        completes). One that sent all it was given is waiting, not stalled."""
        allowed = after_seconds if self.sent_seconds > 0 else max(after_seconds, START_SECONDS)
        return (
            self.started_at is not None
            and self.process.poll() is None
            # More than a report's lag unsent: a publisher waiting for data has sent it all.
            and self.sent_through < self.written_through - 2 * PROGRESS_PERIOD
            and time.monotonic() - self.last_progress > allowed
        )

    def _exit_reason(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._logger.join(timeout=2)
        last = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
        return f"the publisher to {self.url} exited ({' '.join(last) or 'no message'})"

    def kill(self) -> None:
        """Stops it at once: what it had buffered but not sent is dropped. Safe in a signal
        handler that interrupted `send` (its input pipe is left to the garbage collector)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def close(self, timeout: float = 30, waiting: Callable[[], None] = lambda: None) -> None:
        """Lets it send what it has, then stops it (killed after `timeout`), calling
        `waiting()` every WAIT_SLICE meanwhile (it sends at the pace of the air)."""
        with contextlib.suppress(BrokenPipeError, OSError):  # it died with data unsent
            self.process.stdin.close()
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            waiting()
            time.sleep(WAIT_SLICE)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._logger.join(timeout=5)


def _copy_log(stream, log_path: Path) -> None:
    """Copies FFmpeg's warnings into its log until it exits. Lines that cannot be written (a
    full disk) are dropped, but the pipe is always drained: FFmpeg blocks once it is full."""
    with contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as log:
        for raw in stream:
            with contextlib.suppress(OSError):
                log.write(raw.decode("utf-8", errors="replace"))
                log.flush()
    for _ in stream:  # the log could not even be opened
        pass
