"""The as-run log: what a channel actually put out, clip by clip, as its publisher reported
sending it (not as it was queued), with what was cut or skipped and why.

One JSON line an entry, appended per channel and per UTC day (`<playout folder>/as-run/
<YYYY-MM-DD>.jsonl`, by the entry's start) and synced before the next, by the playout process
alone (it holds the channel's lock). A write the disk cannot take is undone (the file cut back
to where it was) and tried again at the next report, so a full disk delays entries and never
leaves half a line. Days older than the retention (`WEBTV_AS_RUN_DAYS`) are removed as a new
day begins: the log's size is bounded and each append costs the same whatever its history.

An entry is written when the publisher has sent the clip's last frame: its start and end are
the wall-clock times its first and last frames went out, read from the publisher's reports
(a clip resumed by a new publisher ends later by the time off air; the stream position is
the one RTMP and HLS timestamps carry). A clip refused at air time is written when refused.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, ValidationError

from webtv_dagster.clips import channel_prefix
from webtv_dagster.playout.sources import IDENT, NEW, REPLAY
from webtv_dagster.playout.state import ScheduledClip

if TYPE_CHECKING:
    from webtv_dagster.media_store import MediaStore
    from webtv_dagster.storage import StoredObject

log = logging.getLogger(__name__)

AS_RUN_FOLDER = "as-run"
# Two entries are contiguous on the timeline within this (timeline floats, rounded to 1 ms).
TIMELINE_TOLERANCE = 1e-3
TAIL_BYTES = 65_536  # read first from a file's end for its last entry (a few hundred entries)

AsRunEvent = Literal["aired", "cut", "skipped"]


class AsRunEntry(BaseModel):
    channel: str
    clip_id: str = Field(description="the clip, or `ident` for the filler (ident or test card)")
    prompt: str = ""
    event: AsRunEvent = Field(
        description="aired: sent whole; cut: taken down on air, sent up to a keyframe; "
        "skipped: refused at air time, never sent"
    )
    origin: str = Field(
        "",
        description="new (its first airing), replay, cued (an operator's pick), ident or test "
        "card; empty if skipped",
    )
    requested_by: str | None = Field(None, description="the viewer whose request it was made of")
    started_at: float = Field(description="Unix time its first frame went out (or the refusal)")
    ended_at: float = Field(description="Unix time its last frame went out (or the refusal)")
    stream_start: float | None = Field(None, description="its place on the stream's timeline")
    stream_end: float | None = None
    reason: str = ""
    viewers: int | None = Field(
        None,
        description="HLS players and RTMP subscribers as its last frame went out (none: not "
        "counted)",
    )

    @property
    def day(self) -> str:
        return day_of(self.started_at)


CSV_COLUMNS = (
    "channel",
    "started_at_utc",
    "ended_at_utc",
    "seconds",
    "event",
    "clip_id",
    "origin",
    "requested_by",
    "stream_start",
    "stream_end",
    "reason",
    "viewers",
    "prompt",
)


def day_of(unix_time: float) -> str:
    return datetime.datetime.fromtimestamp(unix_time, datetime.UTC).date().isoformat()


def oldest_kept(today: str, days_kept: int) -> str:
    """The first day the retention keeps, counting `today` as one."""
    return (datetime.date.fromisoformat(today) - datetime.timedelta(days=days_kept - 1)).isoformat()


def _is_day(name: str) -> bool:
    try:
        return datetime.date.fromisoformat(name).isoformat() == name
    except ValueError:
        return False


def _utc(unix_time: float) -> str:
    return datetime.datetime.fromtimestamp(unix_time, datetime.UTC).isoformat(
        timespec="milliseconds"
    )


def as_csv(entries: Iterable[AsRunEntry]) -> str:
    """The entries as CSV (a header line first), times in UTC ISO 8601."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.channel,
                _utc(e.started_at),
                _utc(e.ended_at),
                f"{e.ended_at - e.started_at:.3f}",
                e.event,
                e.clip_id,
                e.origin,
                e.requested_by or "",
                "" if e.stream_start is None else f"{e.stream_start:.3f}",
                "" if e.stream_end is None else f"{e.stream_end:.3f}",
                e.reason,
                "" if e.viewers is None else e.viewers,
                e.prompt,
            ]
        )
    return out.getvalue()


@dataclass(frozen=True)
class AsRunSummary:
    """A channel's day on air, summed up from its as-run entries."""

    clips_aired: int  # new clips sent whole
    replays: int
    cut: int
    skipped: int
    seconds_on_air: float  # wall-clock seconds of everything sent (fillers too)
    filler_seconds: float
    requested: int  # clips aired that viewers asked for
    peak_viewers: int | None  # the most that watched a clip's end (None: not counted)

    @classmethod
    def of(cls, entries: list[AsRunEntry]) -> AsRunSummary:
        sent = [e for e in entries if e.event != "skipped"]
        return cls(
            clips_aired=sum(e.event == "aired" and e.origin == NEW for e in entries),
            replays=sum(e.origin == REPLAY for e in sent),
            cut=sum(e.event == "cut" for e in entries),
            skipped=sum(e.event == "skipped" for e in entries),
            seconds_on_air=round(sum(e.ended_at - e.started_at for e in sent), 3),
            filler_seconds=round(
                sum(e.ended_at - e.started_at for e in sent if e.clip_id == IDENT), 3
            ),
            requested=sum(e.requested_by is not None for e in sent),
            peak_viewers=max((e.viewers for e in sent if e.viewers is not None), default=None),
        )


def as_run_key(slug: str, day: str) -> str:
    """The bucket's copy of a channel's as-run log of a day, as CSV."""
    return f"{channel_prefix(slug)}{AS_RUN_FOLDER}/{day}.csv"


def publish_as_run(
    store: MediaStore, slug: str, day: str, entries: list[AsRunEntry], days_kept: int
) -> StoredObject:
    """Puts the day's log into the bucket as CSV and removes the copies past the retention
    (at most the retention's days are listed). Returns the stored object."""
    stored = store.put_bytes(as_run_key(slug, day), as_csv(entries).encode(), "text/csv")
    oldest = oldest_kept(day, days_kept)
    for listed in store.list_objects(f"{channel_prefix(slug)}{AS_RUN_FOLDER}/"):
        if Path(listed.key).stem < oldest:
            store.delete(listed.key)
    return stored


class AsRunLog:
    """A channel's as-run files: appended by its playout, read by anyone."""

    def __init__(self, folder: Path, days_kept: int):
        self.folder = folder
        self.days_kept = days_kept
        # The playout's as-run thread appends, and its start and stop (a resume, a last drain).
        self._lock = threading.Lock()
        self._day = ""

    def path(self, day: str) -> Path:
        return self.folder / f"{day}.jsonl"

    def days(self) -> list[str]:
        """The days with a file, oldest first (other files are not the log's)."""
        return sorted(p.stem for p in self.folder.glob("*.jsonl") if _is_day(p.stem))

    def entries(self, day: str) -> list[AsRunEntry]:
        """The day's entries in the order written; none if it has no file."""
        try:
            lines = self.path(day).read_bytes().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for number, line in enumerate(lines, 1):
            try:
                entries.append(AsRunEntry.model_validate_json(line))
            except ValidationError as error:  # written by hand, or by another version
                log.warning("%s line %d is not an entry: %s", self.path(day), number, error)
        return entries

    def between(self, first: str, last: str) -> list[AsRunEntry]:
        """The entries of the days from `first` to `last` (ISO dates, both included)."""
        return [e for day in self.days() if first <= day <= last for e in self.entries(day)]

    def last_stream_end(self) -> float | None:
        """Where the last entry that aired ended on the timeline (None: nothing aired yet),
        read from the end of the latest file that has one: entries that aired are appended in
        timeline order, so a playout's start does not parse a whole day."""
        for day in reversed(self.days()):
            if (end := _last_stream_end_in(self.path(day))) is not None:
                return end
        return None

    def append(self, entry: AsRunEntry) -> None:
        """Appends the entry durably (synced); raises OSError, leaving the file as it was, when
        the disk cannot take it."""
        line = (entry.model_dump_json() + "\n").encode()
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(entry.day), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    written = 0
                    while written < len(line):
                        written += os.write(fd, line[written:])
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # never half a line, which would spoil the next
                    raise
            finally:
                os.close(fd)
            if entry.day != self._day:
                self._day = entry.day
                self.prune(entry.day)

    def prune(self, today: str) -> None:
        """Removes the days older than the retention."""
        oldest = oldest_kept(today, self.days_kept)
        for day in self.days():
            if day < oldest:
                self.path(day).unlink(missing_ok=True)
                log.info("%s: as-run log of %s past its retention: removed", self.folder, day)


class AsRunRecorder:
    """Writes a playout's as-run entries from its schedule (the clips it queued, as they were
    placed on the timeline, a cut clip as long as it aired) and its publisher's reports of how
    far it sent; entries go out in timeline order, each once, across playout restarts."""

    def __init__(
        self, log_: AsRunLog, channel: str, watching: Callable[[], int | None] = lambda: None
    ):
        self.log = log_
        self.channel = channel
        self.watching = watching  # how many watch now (audience/watching.py), None: unknown
        last = log_.last_stream_end()
        self.logged_through = -math.inf if last is None else last
        self._started: dict[float, float] = {}  # a clip's place -> when its first frame went
        self._cuts: dict[float, str] = {}  # a cut clip's place -> why

    def resume(self, schedule: list[ScheduledClip], resume_at: float | None) -> None:
        """After a restart: the clips the last playout had sent whole but not written are
        written (their times as scheduled); the one it was airing keeps its scheduled start."""
        sent = -math.inf if resume_at is None else resume_at
        for clip in schedule:
            if _end(clip) <= sent + TIMELINE_TOLERANCE:
                self._write_aired(clip, clip.starts_at, clip.starts_at + clip.duration_seconds)
            elif clip.stream_seconds <= sent:
                self._started[clip.stream_seconds] = clip.starts_at

    def cut(self, stream_seconds: float, reason: str) -> None:
        """The clip placed at `stream_seconds` was cut on air, for this reason."""
        self._cuts[stream_seconds] = reason

    def sent(self, schedule: list[ScheduledClip], sent_through: float, now: float) -> None:
        """The publisher reported, at `now`, having sent through `sent_through`: each clip
        it finished is written, its first and last frames' times read from the reports (the
        publisher sends in real time). A write that fails is tried again at the next report."""
        for clip in schedule:
            if clip.stream_seconds < self.logged_through - TIMELINE_TOLERANCE:
                continue
            if clip.stream_seconds > sent_through:
                break
            started = self._started.setdefault(
                clip.stream_seconds, now - (sent_through - clip.stream_seconds)
            )
            if _end(clip) > sent_through + TIMELINE_TOLERANCE:
                break
            self._write_aired(clip, started, now - (sent_through - _end(clip)))

    def skipped(self, clip_id: str, reason: str, at: float) -> None:
        """A clip refused at air time (never sent)."""
        self.log.append(
            AsRunEntry(
                channel=self.channel,
                clip_id=clip_id,
                event="skipped",
                started_at=at,
                ended_at=at,
                reason=reason,
            )
        )

    def _write_aired(self, clip: ScheduledClip, started: float, ended: float) -> None:
        if clip.stream_seconds < self.logged_through - TIMELINE_TOLERANCE:
            return  # written already (by the playout before a restart)
        reason = self._cuts.get(clip.stream_seconds, "")
        self.log.append(
            AsRunEntry(
                channel=self.channel,
                clip_id=clip.clip_id,
                prompt=clip.prompt,
                event="cut" if reason else "aired",
                origin=clip.origin,
                requested_by=clip.requested_by,
                started_at=started,
                ended_at=max(started, ended),
                stream_start=round(clip.stream_seconds, 3),
                stream_end=round(_end(clip), 3),
                reason=reason,
                viewers=self.watching(),
            )
        )
        self.logged_through = _end(clip)
        self._started.pop(clip.stream_seconds, None)
        self._cuts.pop(clip.stream_seconds, None)
        # Places behind the timeline (a clip queued, then moved by a cut) are never written.
        for places in (self._started, self._cuts):
            for place in [p for p in places if p < self.logged_through]:
                del places[place]


def _last_stream_end_in(path: Path) -> float | None:
    """The stream_end of the file's last entry that has one, reading back from its end."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        tail = TAIL_BYTES
        while True:
            file.seek(max(0, size - tail))
            lines = file.read().splitlines()[0 if tail >= size else 1 :]  # the first: a part
            for line in reversed(lines):
                with contextlib.suppress(ValidationError):
                    if (end := AsRunEntry.model_validate_json(line).stream_end) is not None:
                        return end
            if tail >= size:
                return None
            tail *= 4


def _end(clip: ScheduledClip) -> float:
    return clip.stream_seconds + clip.duration_seconds
