"""A channel on air: clips from its playlist, verified and remuxed ahead of air, fed to one
publisher that is replaced at once if it dies; a filler (the channel's ident, made by the
pipeline) when nothing else can air; a state file for viewers and sensors.

Three threads, so that nothing slow sits between two clips:
- the library (library.py) reads the playlist and fetches upcoming clips and the ident from S3;
- the preparer picks what airs next from a chain of sources tried in order (sources.py:
  UnairedClips, the next unaired clip; Replays, a recent clip again; Filler, the ident or a
  test card), checks it against its record and remuxes it onto the timeline, one clip ahead;
- the feeder (the caller of `run`) writes prepared segments into the publisher, a keyframe to
  the next, and starts a new publisher at the first keyframe the old one cannot have sent when
  it dies or stalls (a restarted playout likewise resumes the clip it was airing).
A fourth watches the channel's take-downs: a clip taken down while it airs is cut at its next
keyframe not yet written (within 2 s), and what follows is placed where it stopped.

The playout makes nothing: the ident is the `channel_ident` asset's. Only when it has no ident
(never made, or it does not remux) does it air a test card, SMPTE bars made by FFmpeg alone
(media.broadcast.render_slate), so that a channel never goes dark.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId
from webtv_dagster.media.ffmpeg import MediaToolError
from webtv_dagster.playout.as_run import AsRunLog, AsRunRecorder
from webtv_dagster.playout.files import DiskTrouble, write_atomically
from webtv_dagster.playout.library import ClipLibrary
from webtv_dagster.playout.playlist import PlaylistEntry, unaired_entries
from webtv_dagster.playout.process import HEARTBEAT_SECONDS, Heartbeat
from webtv_dagster.playout.publisher import (
    PROGRESS_PERIOD,
    START_SECONDS,
    Publisher,
    PublisherDied,
    Segment,
    fold_of,
    give_free_pages_back,
    placed_at,
    remux_segment,
)
from webtv_dagster.playout.sources import (
    CUED,
    FETCH_WAIT_SECONDS,
    IDENT,
    CuedClip,
    Filler,
    Pick,
    Replays,
    Source,
    UnairedClips,
)
from webtv_dagster.playout.state import (
    GUIDE_LENGTH,
    SCHEDULE_LENGTH,
    SKIPS_KEPT,
    GuideEntry,
    PlayoutFolder,
    PlayoutState,
    ScheduledClip,
    SkippedClip,
    read_state,
    write_state,
)
from webtv_dagster.playout.takedowns import Takedown, TakedownWatch
from webtv_dagster.public_site import read_watching
from webtv_dagster.storage import ObjectReader

log = logging.getLogger(__name__)

# A publisher with data that sends nothing this long is replaced (it reports every 0.25 s): the
# feeder, blocked writing to it meanwhile, beats again within the watchdog's allowance.
STALL_SECONDS = 1.5
PUBLISHER_WATCH_SECONDS = 0.25
TAKEDOWN_POLL_SECONDS = 0.2  # how often the take-downs are asked for (a conditional GET)
# A piece (one keyframe to the next) is written once the publisher has sent up to this long
# before it: enough to never leave the publisher waiting, short enough that a take-down reaches
# the air at the next keyframe, within 2 s.
FEED_LEAD_SECONDS = 0.25


def restart_backoff(failures: int) -> float:
    """Seconds before the next publisher after `failures` in a row that sent nothing: the first
    replacement starts at once, the next every 0.2 s for about 3 s (the RTMP server restarting:
    it listens again within 1-2 s, and each wait past that is time off air), then every 1 s."""
    return 0.0 if failures <= 1 else 0.2 if failures <= 15 else 1.0


class ChannelPlayout:
    """Airs one channel until stopped: the next unaired clip of its playlist, else its recent
    clips again, else its ident (or a test card). Never waits on S3, and never stops for a dead
    publisher or a bad clip."""

    def __init__(
        self,
        store: ObjectReader,
        channel: Channel,
        url: str,
        data_dir: Path,
        cache_bytes: int,
        recent_loop: int = 10,
        notify_socket: str = "",
        publisher_ffmpeg: str | None = None,
        as_run_days: int = 31,
    ):
        self.channel = channel
        self.data_dir = data_dir
        self.folder = PlayoutFolder.of(data_dir, channel.slug)
        self.folder.path.mkdir(parents=True, exist_ok=True)
        self.library = ClipLibrary(store, channel.slug, self.folder, cache_bytes)
        # Beaten by the feeder as it works: a playout that hangs stops beating, and the stack's
        # watchdog (or systemd's, through `notify_socket`) kills it for its supervisor to
        # restart.
        self.heartbeat = Heartbeat(self.folder.heartbeat, notify_socket)
        self.takedowns = TakedownWatch(store, channel.slug, self.folder.takedowns)
        self.url = url
        self.publisher_ffmpeg = publisher_ffmpeg  # None: the slim build if there is one
        self._filler = Filler(self.library, self.folder, channel.title)
        # What airs next: the first of these with something to air.
        self.sources: tuple[Source, ...] = (
            CuedClip(self.library, self.folder, self._taken_down),
            UnairedClips(self.library, self._taken_down, self._skip),
            Replays(self.library, self._taken_down, recent_loop),
            self._filler,
        )
        self.stop = threading.Event()
        previous = read_state(data_dir, channel.slug)
        # A restarted playout goes on where the last one stopped sending, on the same timeline:
        # the rest of the clip it was airing (interrupted), then after it.
        self._resume_at = self._resume_point()
        schedule = previous.schedule if previous else []
        self.interrupted = _airing(schedule, self._resume_at)
        self.aired_through = previous.aired_through if previous else 0
        # Clips queued after it were never sent (on a busy machine the last playout may have
        # queued one before its publisher reported the one before): they air again.
        airing = self.interrupted
        unsent = [c for c in schedule if airing and c.stream_seconds > airing.stream_seconds]
        if numbers := [ClipId.parse(c.clip_id).number for c in unsent if c.clip_id != IDENT]:
            self.aired_through = min(self.aired_through, min(numbers) - 1)
        # What aired stays on the schedule (viewers' players lag the air by seconds).
        self._schedule: list[ScheduledClip] = [c for c in schedule if c not in unsent]
        self._prepared_through = self.aired_through
        # Where the preparer places its next segment; a cut moves it back (under the lock).
        self._next_stream_seconds = (
            previous.model_copy(update={"schedule": self._schedule}).timeline_end
            if previous
            else 0.0
        )
        self._timeline_lock = threading.Lock()
        self._skipped: list[SkippedClip] = previous.skipped if previous else []
        self._skips_lock = threading.Lock()  # the preparer and the feeder both add skips
        self._segments: queue.Queue[Segment] = queue.Queue(maxsize=1)
        self._up_next: list[PlaylistEntry] = []
        self.publisher: Publisher | None = None
        self.publisher_restarts = 0
        self.clips_skipped = self.clips_taken_down = 0
        self.publisher_error: str | None = None  # why the last one died, until one sends
        self._publisher_origin = time.time()
        self._state_lock = threading.Lock()
        # A full disk fails the writes of the state, progress and as-run files, never air.
        self._disk = DiskTrouble(f"{channel.slug}: its state, progress and as-run files")
        self.as_run = AsRunRecorder(
            AsRunLog(self.folder.as_run, as_run_days), channel.slug, self._watching
        )
        self._write_as_run(lambda: self.as_run.resume(self._schedule, self._resume_at))
        # The as-run log is written (and synced) by a thread of its own: a slow disk never
        # holds the publisher's reports, which say whether it is alive, nor the feeder.
        self._as_run_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._latest_report: tuple[float, float] | None = None  # (sent_through, when)
        self._as_run_due = threading.Event()

    # --- the preparer: what airs next, checked and remuxed ahead of air ---

    def _next(self) -> tuple[Pick, list[PlaylistEntry]]:
        """What airs next, from the first source that has something, and the unaired entries
        after it."""
        playlist = self.library.playlist
        unaired = unaired_entries(playlist, self._prepared_through)
        for source in self.sources:
            pick, unaired = source.pick(playlist, unaired)
            if pick is not None:
                return pick, unaired
        raise MediaToolError(f"{self.channel.slug} has nothing to air, not even a filler")

    def _taken_down(self, clip_id: str) -> Takedown | None:
        return self.takedowns.clips.get(clip_id)

    def _skip(
        self,
        clip_id: str,
        reason: str,
        taken_down: bool = False,
        why: str = "",
        aired: bool = False,
    ) -> None:
        """Records why the clip does not air (once for a take-down: a clip left out as it is
        prepared, again as a replay, is one take-down). `reason` goes into the public state;
        `why` (an operator's words) into the log and the as-run log only. A clip that `aired`
        (in part: cut on air) is in the as-run log as aired, not as skipped."""
        number = ClipId.parse(clip_id).number
        self._prepared_through = max(self._prepared_through, number)
        self.aired_through = max(self.aired_through, number)
        with self._skips_lock:
            if taken_down and self._takedown_recorded(clip_id):
                return
            log.warning("%s: skipped: %s%s", clip_id, reason, f" ({why})" if why else "")
            skip = SkippedClip(
                clip_id=clip_id, reason=reason, at=time.time(), taken_down=taken_down
            )
            self._skipped = [*self._skipped, skip][-SKIPS_KEPT:]
            self.clips_skipped += 1
            self.clips_taken_down += taken_down
        if not aired:
            as_run_reason = f"{reason} ({why})" if why else reason
            self._for_as_run(lambda: self.as_run.skipped(clip_id, as_run_reason, skip.at))

    def _takedown_recorded(self, clip_id: str) -> bool:
        """Whether the clip's take-down, as this playout knows it, is recorded already."""
        since = self.takedowns.known_since.get(clip_id, 0.0)
        return any(s.clip_id == clip_id and s.taken_down and s.at >= since for s in self._skipped)

    def _prepare(self, start: float) -> Segment:
        """The next segment, placed at `start`; a clip that fails its checks is skipped."""
        while True:
            pick, later = self._next()
            self._up_next = later
            try:
                segment = remux_segment(
                    pick.path,
                    pick.clip_id,
                    pick.prompt,
                    start,
                    BROADCAST_PROFILE.fps,
                )
                segment = replace(
                    segment,
                    origin=pick.origin,
                    requested_by=pick.entry.requested_by if pick.entry else None,
                )
                if pick.entry is not None:
                    expected = round(pick.entry.duration_seconds * BROADCAST_PROFILE.fps)
                    if segment.frames != expected:
                        raise MediaToolError(
                            f"it remuxes to {segment.frames} frames where its "
                            f"record says {expected}"
                        )
            except MediaToolError as error:
                if pick.entry is None:
                    self._filler.refused(pick, str(error))
                    continue
                self.library.mark_unairable(pick.entry, str(error))
                number = ClipId.parse(pick.clip_id).number
                if pick.origin != CUED and number > self._prepared_through:
                    self._skip(pick.clip_id, str(error))
                continue
            if pick.entry is not None and pick.origin != CUED:
                number = ClipId.parse(pick.clip_id).number
                self._prepared_through = max(self._prepared_through, number)
            return segment

    def _keep_prepared(self) -> None:
        # At start, give S3 a moment to answer with the playlist, the ident and the take-downs
        # before airing a filler (the take-downs last read are kept on disk meanwhile).
        deadline = time.monotonic() + FETCH_WAIT_SECONDS
        for answered in (self.library.refreshed, self.takedowns.answered):
            answered.wait(max(0.0, deadline - time.monotonic()))
        try:
            while not self.stop.is_set():
                with self._timeline_lock:
                    start = self._next_stream_seconds
                segment = self._prepare(start)
                # The timeline advances by what was actually remuxed, never by a record's claim;
                # by its length, not to its end: a cut meanwhile moved the timeline back (the
                # feeder places this segment where the cut left off).
                with self._timeline_lock:
                    self._next_stream_seconds += segment.duration
                while not self.stop.is_set():
                    with contextlib.suppress(queue.Full):
                        self._segments.put(segment, timeout=0.5)
                        break
                give_free_pages_back()  # what the clips before this one held
        except Exception:
            log.exception("the preparer of %s failed", self.channel.slug)
            self.stop.set()
            raise

    # --- the feeder: segments into the publisher, which is replaced when it dies ---

    def run(self) -> None:
        self.library.start()
        for watch in (self._watch_takedowns, self._watch_publisher):
            threading.Thread(target=watch, daemon=True).start()
        as_run = threading.Thread(target=self._keep_as_run, daemon=True)
        as_run.start()
        preparer = threading.Thread(target=self._keep_prepared, daemon=True)
        preparer.start()
        to_send: list[Segment] = [rest] if (rest := self._rest_of_interrupted()) else []
        given: list[Segment] = []  # given to the current publisher, maybe not sent yet
        failures = 0  # publishers in a row that died having sent nothing
        position: float | None = None  # where the timeline goes on: the last segment's end
        try:
            while not self.stop.is_set():
                self.heartbeat.beat()
                if not to_send:
                    try:
                        fresh = self._segments.get(timeout=HEARTBEAT_SECONDS)
                    except queue.Empty:
                        continue
                    to_send = [placed] if (placed := self._placed(fresh, position)) else []
                try:
                    while to_send:
                        segment = to_send.pop(0)
                        fold = fold_of(segment.stream_seconds)
                        if self.publisher is not None and fold != self.publisher.fold:
                            self._fold_timestamps()
                            given = []
                        if self.publisher is None:
                            self.publisher = Publisher(
                                self.url,
                                self.folder.publisher_log,
                                segment.stream_seconds,
                                on_progress=self._note_progress,
                                ffmpeg=self.publisher_ffmpeg,
                            )
                        # Where the next one goes even if this publisher dies while sending it
                        # (its unsent part is then skipped, as the preparer's timeline did).
                        position = segment.end
                        position = self._feed(segment, given)
                        given = [s for s in given if s.end > self.publisher.sent_through]
                except PublisherDied as died:
                    if self.stop.is_set():
                        break
                    to_send, failures = self._replace_publisher(died, given + to_send, failures)
                    given = []
        finally:
            self.stop.set()
            self.library.stop.set()
            if self.publisher is not None:
                self.publisher.kill()
            preparer.join(timeout=5)
            as_run.join(timeout=5)
            self._write_due_as_run()  # what was sent before the stop

    def _fold_timestamps(self) -> None:
        """The timeline passed a fold (FLV_FOLD_SECONDS): the publisher sends all it was given
        and exits, and the next one starts its timestamps from 0 again."""
        log.info("%s: the stream's timestamps restart from 0 (a fold)", self.channel.slug)
        self.publisher.close(timeout=FEED_LEAD_SECONDS + START_SECONDS, waiting=self.heartbeat.beat)
        self.publisher = None

    def _placed(self, segment: Segment, position: float | None) -> Segment | None:
        """A fresh segment from the preparer, placed where the timeline is (a cut may have
        moved the timeline back after it was prepared: it is remuxed again there). None if it
        cannot be placed."""
        if position is None:
            return segment
        if takedown := self._taken_down(segment.clip_id):
            self._cut(segment, 0, takedown)  # taken down while it waited: never aired
            return None
        try:
            placed = placed_at(segment, position)
        except MediaToolError as error:  # its cached copy went meanwhile
            placed = None
            if segment.clip_id != IDENT:
                self._skip(segment.clip_id, f"it could not be placed after a cut: {error}")
        # The preparer counted the segment as it was remuxed first: it goes on from here.
        with self._timeline_lock:
            self._next_stream_seconds += (placed.duration if placed else 0) - segment.duration
        return placed

    def _feed(self, segment: Segment, given: list[Segment]) -> float:
        """Writes the segment into the publisher a keyframe to the next, each piece when the air
        comes within FEED_LEAD_SECONDS of it; if its clip is taken down meanwhile, what is not
        written yet is left out (nothing of it, if nothing was written). Returns where it ends
        on the timeline."""

        def taken_down() -> Takedown | None:
            return self._taken_down(segment.clip_id)

        def interrupted() -> bool:
            self.heartbeat.beat()  # waiting for air to reach the piece is work too
            return self.stop.is_set() or taken_down() is not None

        sent = 0
        for piece in segment.pieces():
            if not taken_down():
                self.publisher.wait_until_sending(
                    piece.stream_seconds - FEED_LEAD_SECONDS, interrupted
                )
            if takedown := taken_down():
                cut = self._cut(segment, sent, takedown)
                if sent:
                    given[-1] = cut  # a publisher that dies now resends nothing of it
                return cut.end
            self._note_takedowns_aired(before=segment.stream_seconds)
            if self.stop.is_set():
                break
            if not sent:
                # Recorded first: a playout killed while it sends this segment resumes in it
                # when restarted, never back over frames already on air.
                self._record_on_air(segment)
                given.append(segment)
            self.publisher.send(piece, waiting=self.heartbeat.beat)
            self.heartbeat.beat()
            sent += piece.frames
        return segment.end

    def _cut(self, segment: Segment, frames: int, takedown: Takedown) -> Segment:
        """The segment cut after `frames` (a keyframe; 0: before it aired), recorded like a
        skip (the take-down's reason in the log only: the state is public); the timeline moves
        back by what was left out."""
        cut = segment.cut_after(frames)
        with self._timeline_lock:
            self._next_stream_seconds -= segment.end - cut.end
        if frames:
            # Known to the as-run log before the schedule shortens the clip (its thread does
            # what it is given before it reads the schedule).
            why = f"taken down on air after {cut.duration:.1f} s ({takedown.reason})"
            self._for_as_run(lambda: self.as_run.cut(segment.stream_seconds, why))
            # The schedule (the viewers' guide) shows what aired: the clip as long as it was.
            self._schedule = [
                clip.model_copy(update={"duration_seconds": cut.duration})
                if clip.stream_seconds == segment.stream_seconds
                else clip
                for clip in self._schedule
            ]
            reason = f"taken down on air after {cut.duration:.1f} s"
            log.warning("%s: cut on air after %.1f s", segment.clip_id, cut.duration)
        else:
            reason = "taken down"
        self._skip(segment.clip_id, reason, True, takedown.reason, aired=frames > 0)
        self._write_state()
        return cut

    def _note_takedowns_aired(self, before: float) -> None:
        """Records the take-down of a clip of the schedule that had left the feeder (a viewer's
        player, seconds behind, may still show it): it never airs again."""
        for clip in self._schedule:
            takedown = self._taken_down(clip.clip_id)
            if (
                clip.stream_seconds < before
                and takedown
                and not self._takedown_recorded(clip.clip_id)
            ):
                self._skip(
                    clip.clip_id, "taken down after it aired", True, takedown.reason, aired=True
                )
                self._write_state()

    def _watch_takedowns(self) -> None:
        """Keeps the take-downs current (never on the air path: the feeder and the preparer
        read the last set known, so a slow or dead S3 only delays a take-down)."""
        while not self.stop.is_set():
            try:
                self.takedowns.refresh()
            except Exception as error:  # S3 away, a bad document: the last set stays
                log.debug("%s: take-downs not read: %s", self.channel.slug, error)
            self.stop.wait(TAKEDOWN_POLL_SECONDS)

    def _replace_publisher(
        self, died: PublisherDied, given: list[Segment], failures: int
    ) -> tuple[list[Segment], int]:
        """After a publisher died: the segments to send again (those it had not begun to send;
        one it sent in part has aired), and the failures in a row that sent nothing."""
        sent_through = self.publisher.may_have_sent_through()
        failures = 0 if self.publisher.sent_seconds > 0 else failures + 1
        self.publisher = None
        self.publisher_restarts += 1
        self.publisher_error = str(died)
        self._write_state()
        # From the first keyframe it cannot have sent: at most a keyframe interval of what
        # viewers did not see is lost, and nothing they saw is sent twice.
        resend = [rest for s in given if (rest := s.rest_from(sent_through))]
        log.warning(
            "%s: %s; a new publisher continues at stream position %.3f s",
            self.channel.slug,
            died,
            resend[0].stream_seconds if resend else sent_through,
        )
        self.stop.wait(restart_backoff(failures))
        return resend, failures

    def _watch_publisher(self) -> None:
        while not self.stop.wait(PUBLISHER_WATCH_SECONDS):
            publisher = self.publisher
            if publisher is not None and publisher.sent_seconds > 0 and self.publisher_error:
                self.publisher_error = None  # a publisher sends again
                self._write_state()
            if publisher is not None and publisher.stalled(STALL_SECONDS):
                log.warning(
                    "%s: the publisher sent nothing for %.1f s: replacing it",
                    self.channel.slug,
                    STALL_SECONDS if publisher.sent_seconds > 0 else START_SECONDS,
                )
                publisher.kill()

    def shutdown(self) -> None:
        """Stops airing at once (from a signal handler too): the publisher is killed rather than
        drained, so a stop never waits for the clip on air to end."""
        self.stop.set()
        if self.publisher is not None:
            self.publisher.kill()

    def _record_on_air(self, segment: Segment) -> None:
        if self._resumes_scheduled(segment):
            self._publisher_origin = self.publisher.wall_time_of(0.0)
            self._write_state()
            return
        if segment.clip_id != IDENT and segment.origin != CUED:
            self.aired_through = max(self.aired_through, ClipId.parse(segment.clip_id).number)
        scheduled = ScheduledClip(
            clip_id=segment.clip_id,
            prompt=segment.prompt,
            duration_seconds=segment.duration,
            starts_at=self.publisher.wall_time_of(segment.stream_seconds),
            stream_seconds=segment.stream_seconds,
            origin=segment.origin,
            requested_by=segment.requested_by,
        )
        earlier = [c for c in self._schedule if c.stream_seconds < segment.stream_seconds]
        self._schedule = [*earlier, scheduled][-SCHEDULE_LENGTH:]
        self._publisher_origin = self.publisher.wall_time_of(0.0)
        self._write_state()

    def _resumes_scheduled(self, segment: Segment) -> bool:
        """Whether the segment is the rest of a clip on the schedule already (air resumed in it
        after a publisher or playout died): the schedule keeps the clip as it began."""
        return any(
            clip.clip_id == segment.clip_id
            and clip.stream_seconds
            < segment.stream_seconds
            < clip.stream_seconds + clip.duration_seconds
            for clip in self._schedule
        )

    def _note_progress(self, sent_through: float) -> None:
        """The publisher's report, kept in the playout's folder: where a restarted playout
        resumes (it never resends what was written to a publisher), and the sign of life the
        stack's watchdog looks at."""
        publisher = self.publisher
        written = publisher.written_through if publisher else sent_through
        progress = {"sent_through": round(sent_through, 3), "written_through": round(written, 3)}
        try:
            write_atomically(self.folder.progress, json.dumps(progress).encode())
        except OSError as error:
            self._disk.failed(error)
        self._latest_report = (sent_through, time.time())
        self._as_run_due.set()

    def _for_as_run(self, job: Callable[[], None]) -> None:
        """Gives the as-run thread something to record: the recorder is its alone."""
        self._as_run_jobs.put(job)
        self._as_run_due.set()

    def _keep_as_run(self) -> None:
        """Writes the as-run log as the playout goes: what it was given (refusals, cuts), then
        what the latest report says was sent (reports that came meanwhile say less)."""
        while not self.stop.is_set():
            self._as_run_due.wait(0.5)
            self._as_run_due.clear()
            self._write_due_as_run()

    def _write_due_as_run(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._write_as_run(self._as_run_jobs.get_nowait())
        if report := self._latest_report:
            self._latest_report = None
            self._write_as_run(lambda: self.as_run.sent(self._schedule, *report))

    def _watching(self) -> int | None:
        counted = read_watching(self.data_dir, time.time()).get(self.channel.slug)
        return counted["hls"] + counted["rtmp"] if counted else None

    def _write_as_run(self, write: Callable[[], None]) -> None:
        """An as-run write; one the disk cannot take waits (what aired is written at the next
        report) and never stops air."""
        try:
            write()
        except OSError as error:
            self._disk.failed(error)

    def _resume_point(self) -> float | None:
        """Where the last playout's publisher may have sent through, by its last report in the
        folder (None: there is none). It died with its playout (it asks the kernel to): it sent
        at most a report's period past that report, and never more than it was written."""
        try:
            progress = json.loads(self.folder.progress.read_text())
            return min(progress["sent_through"] + PROGRESS_PERIOD, progress["written_through"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _rest_of_interrupted(self) -> Segment | None:
        """The rest of the clip the last playout was airing when it died, from the first
        keyframe its publisher cannot have sent; None when it had sent all of it, or the clip
        cannot air (taken down meanwhile, or no local copy)."""
        clip, resume = self.interrupted, self._resume_at
        if clip is None or resume is None:
            return None
        if not 0 < resume - clip.stream_seconds < clip.duration_seconds:
            return None
        if self._taken_down(clip.clip_id):
            return None
        if clip.clip_id == IDENT:  # the ident, or the test card while there is none
            path = self.folder.ident if self.folder.ident.exists() else self.folder.slate
        else:
            path = self.library.cache.path(clip.clip_id)
        try:
            segment = replace(
                remux_segment(
                    path, clip.clip_id, clip.prompt, clip.stream_seconds, BROADCAST_PROFILE.fps
                ),
                origin=clip.origin,
                requested_by=clip.requested_by,
            )
        except MediaToolError as error:
            log.warning("%s: not resumed (%s); air goes on after it", clip.clip_id, error)
            return None
        if abs(segment.duration - clip.duration_seconds) > 0.5 / BROADCAST_PROFILE.fps:
            return None  # not the clip as it aired (cut on air, or another copy)
        rest = segment.rest_from(resume)
        if rest is not None:
            log.info("%s: resumed at stream position %.3f s", clip.clip_id, rest.stream_seconds)
        return rest

    def _write_state(self) -> None:
        later = [entry for entry in self._up_next if not self._taken_down(entry.clip_id)]
        state = PlayoutState(
            channel=self.channel.slug,
            title=self.channel.title,
            publisher_started_at=self._publisher_origin,
            updated_at=time.time(),
            aired_through=self.aired_through,
            unplayed_seconds=sum(entry.duration_seconds for entry in later),
            schedule=self._schedule,
            up_next=[
                GuideEntry(clip_id=e.clip_id, prompt=e.prompt, duration_seconds=e.duration_seconds)
                for e in later[:GUIDE_LENGTH]
            ],
            skipped=self._skipped,
            publisher_restarts=self.publisher_restarts,
            clips_skipped=self.clips_skipped,
            clips_taken_down=self.clips_taken_down,
            publisher_error=self.publisher_error,
        )
        with self._state_lock:  # the feeder and the publisher watch both write it
            try:
                write_state(self.data_dir, state)
            except OSError as error:
                self._disk.failed(error)
            else:
                self._disk.succeeded()


def _airing(schedule: list[ScheduledClip], resume_at: float | None) -> ScheduledClip | None:
    """The clip of the schedule that was airing at `resume_at` (the last one that started by
    then); the last one when that is not known."""
    started = [c for c in schedule if resume_at is not None and c.stream_seconds <= resume_at]
    return started[-1] if started else (schedule[-1] if schedule else None)
