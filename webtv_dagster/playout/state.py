"""A channel playout's folder (every file in it, named once: PlayoutFolder) and the state file
that sensors, jobs, the supervisor and the viewer (through nginx) read: what aired, what comes
next, what was skipped and why."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from webtv_dagster.playout.files import write_atomically
from webtv_dagster.playout.playlist import PLAYLIST_JSON
from webtv_dagster.playout.publisher import FLV_FOLD_SECONDS
from webtv_dagster.playout.takedowns import TAKEDOWNS_JSON
from webtv_dagster.public_site import make_public_folder, viewer_state_path

SCHEDULE_LENGTH = 10  # aired and queued clips kept in the state file (a player may lag 30 s)
GUIDE_LENGTH = 5  # playlist clips after those, listed as coming next
SKIPS_KEPT = 20  # most recent clips the playout refused to air


class GuideEntry(BaseModel):
    clip_id: str
    prompt: str
    duration_seconds: float


class ScheduledClip(GuideEntry):
    starts_at: float = Field(description="Unix time the publisher sends the clip's first frame")
    stream_seconds: float = Field(
        description="where the clip starts on the stream's timeline (RTMP and HLS timestamps, "
        "0 at the channel's first frame; it goes on across publisher and playout restarts)"
    )
    origin: str = Field(
        "", description="new (its first airing), replay, cued (an operator's), ident or test card"
    )
    requested_by: str | None = Field(None, description="the viewer whose request it was made of")


class SkippedClip(BaseModel):
    clip_id: str
    reason: str
    at: float = Field(description="Unix time of the skip")
    taken_down: bool = Field(False, description="an operator took it down (cut if on air)")


class PlayoutState(BaseModel):
    """What is on air: written after every clip, read by the viewer and the buffer sensor."""

    channel: str
    title: str
    publisher_started_at: float = Field(
        description="Unix time at which stream position 0 went out, as paced by the current "
        "publisher (wall time lost across publisher restarts moves it later)"
    )
    updated_at: float
    aired_through: int = Field(0, description="highest clip number queued for air or skipped")
    unplayed_seconds: float = Field(description="playlist seconds not yet aired")
    schedule: list[ScheduledClip] = Field(description="clips aired and queued, oldest first")
    up_next: list[GuideEntry] = Field(description="the playlist's next clips after the queue")
    skipped: list[SkippedClip] = Field(
        [], description=f"the last {SKIPS_KEPT} clips refused at air time, with the reason"
    )
    publisher_restarts: int = Field(0, description="publishers replaced since the playout began")
    clips_skipped: int = Field(
        0, description="clips refused at air time since the playout began, take-downs included"
    )
    clips_taken_down: int = Field(0, description="clips taken down since the playout began")
    publisher_error: str | None = Field(
        None,
        description="why the last publisher died, until a new one sends (the playout "
        "keeps replacing it)",
    )
    timestamps_restart_every: float = Field(
        FLV_FOLD_SECONDS,
        description="the stream's RTMP and HLS timestamps are its timeline modulo this many "
        "seconds (they restart from 0 each time the timeline passes a multiple of it)",
    )

    def on_air(self, now: float | None = None) -> ScheduledClip | None:
        now = time.time() if now is None else now
        current = [clip for clip in self.schedule if clip.starts_at <= now]
        return current[-1] if current else None

    @property
    def timeline_end(self) -> float:
        """Where the next clip goes on the stream's timeline."""
        last = self.schedule[-1] if self.schedule else None
        return last.stream_seconds + last.duration_seconds if last else 0.0


@dataclass(frozen=True)
class PlayoutFolder:
    """Where a channel's playout keeps its state, lock, logs, clip cache and fillers: the one
    place that names each file of the folder."""

    path: Path

    @classmethod
    def of(cls, data_dir: Path, slug: str) -> PlayoutFolder:
        return cls(data_dir / "playout" / slug)

    @property
    def state(self) -> Path:
        """What is on air (PlayoutState), written after every clip."""
        return self.path / "state.json"

    @property
    def lock(self) -> Path:
        """Locked by the playout process for as long as it runs."""
        return self.path / "playout.lock"

    @property
    def pid(self) -> Path:
        """The running playout's pid and start time, beside its lock."""
        return self.path / "playout.pid"

    @property
    def stopped_marker(self) -> Path:
        """There while an operator has the channel stopped: the watchdog leaves it off air."""
        return self.path / "stopped"

    @property
    def heartbeat(self) -> Path:
        """Touched by the playout's feeder at least every second while it works
        (process.Heartbeat): the stack's watchdog kills a playout that stops beating."""
        return self.path / "heartbeat"

    @property
    def progress(self) -> Path:
        """The stream position the publisher last reported sent, rewritten at each report (a
        few times a second; its mtime says when): where a restarted playout resumes, and the
        playout's sign of life for the stack's watchdog."""
        return self.path / "progress"

    @property
    def cue(self) -> Path:
        """The clip an operator asked to air next (sources.cue_clip), until the playout takes
        it."""
        return self.path / "cue.json"

    @property
    def as_run(self) -> Path:
        """The as-run log (as_run.AsRunLog): what went out, one file a day."""
        return self.path / "as-run"

    @property
    def playout_log(self) -> Path:
        """The playout process's output."""
        return self.path / "playout.log"

    @property
    def publisher_log(self) -> Path:
        """The FFmpeg publishers' warnings and last words."""
        return self.path / "publisher.log"

    @property
    def takedowns(self) -> Path:
        """The last take-downs read from the bucket, for a restart while S3 is away."""
        return self.path / TAKEDOWNS_JSON

    @property
    def playlist(self) -> Path:
        """The last good playlist read from the bucket (library.saved_playlist reads it)."""
        return self.path / PLAYLIST_JSON

    @property
    def cache(self) -> Path:
        """Verified local copies of clips (library.ClipCache), bounded by size."""
        return self.path / "cache"

    @property
    def ident(self) -> Path:
        """The local copy of the channel's ident, fetched from the bucket."""
        return self.path / "ident.mp4"

    @property
    def slate(self) -> Path:
        """The test card the playout airs when it has no ident (media.slate)."""
        return self.path / "slate.mp4"


def read_state(data_dir: Path, slug: str) -> PlayoutState | None:
    path = PlayoutFolder.of(data_dir, slug).state
    try:
        return PlayoutState.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def aired_through_of(data_dir: Path, slug: str) -> int:
    """The channel's highest clip number queued for air or skipped (0: nothing aired yet)."""
    state = read_state(data_dir, slug)
    return state.aired_through if state else 0


def write_state(data_dir: Path, state: PlayoutState) -> None:
    """Writes the state, and the copy the viewer reads where nginx's workers can reach it."""
    text = json.dumps(state.model_dump(), indent=2)
    copy = viewer_state_path(data_dir, state.channel)
    make_public_folder(copy.parent)
    for path in (PlayoutFolder.of(data_dir, state.channel).state, copy):
        write_atomically(path, text.encode())  # readers never see half a file
