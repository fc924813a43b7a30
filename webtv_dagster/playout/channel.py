"""A channel on air: clips from its playlist in S3, through a bounded local cache, into one
publisher; a locally made ident when nothing else can air; a state file for viewers and sensors.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field

from webtv_dagster.backends.interpolator import InterpolationRequest, MotionInterpolator
from webtv_dagster.backends.music import MusicRequest, ProceduralMusicGenerator
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TakeRequest
from webtv_dagster.backends.upscaler import LanczosUpscaler, UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId, channel_prefix
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.conform import INTERMEDIATE_X264
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.playlist import PLAYLIST_JSON, Playlist, PlaylistEntry
from webtv_dagster.playout.publisher import TIMELINE_START, Publisher
from webtv_dagster.storage import MediaStore, StorageError

IDENT = "ident"
IDENT_FRAMES = 128  # 5.333 s: two gapless units
SCHEDULE_LENGTH = 6  # aired and queued clips kept in the state file
GUIDE_LENGTH = 5  # playlist clips after those, listed as coming next


class GuideEntry(BaseModel):
    clip_id: str
    prompt: str
    duration_seconds: float


class ScheduledClip(GuideEntry):
    starts_at: float = Field(description="Unix time the publisher sends the clip's first frame")
    stream_seconds: float = Field(
        description="where the clip starts on the stream's timeline (RTMP and HLS timestamps, "
        "0 when the publisher started)"
    )


class PlayoutState(BaseModel):
    """What is on air: written after every clip, read by the viewer and the buffer sensor."""

    channel: str
    title: str
    publisher_started_at: float
    updated_at: float
    aired_through: int = Field(0, description="highest clip number queued for air")
    unplayed_seconds: float = Field(description="playlist seconds not yet aired")
    schedule: list[ScheduledClip] = Field(description="clips aired and queued, oldest first")
    up_next: list[GuideEntry] = Field(description="the playlist's next clips after the queue")

    def on_air(self, now: float | None = None) -> ScheduledClip | None:
        now = time.time() if now is None else now
        current = [clip for clip in self.schedule if clip.starts_at <= now]
        return current[-1] if current else None


def playout_folder(data_dir: Path, slug: str) -> Path:
    """Where a channel's playout keeps its state, cache, ident, logs and lock."""
    return data_dir / "playout" / slug


def state_path(data_dir: Path, slug: str) -> Path:
    return playout_folder(data_dir, slug) / "state.json"


def read_state(data_dir: Path, slug: str) -> PlayoutState | None:
    path = state_path(data_dir, slug)
    try:
        return PlayoutState.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


class ClipCache:
    """Local copies of clips, so a slow or briefly unreachable S3 never stalls the air."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.mp4"

    def fetch(self, store: MediaStore, entry: PlaylistEntry, key: str) -> Path:
        target = self.path(entry.clip_id)
        if not target.exists():
            partial = target.with_suffix(".part")
            store.download_file(key, partial)
            partial.replace(target)
        target.touch()  # most recently used
        self._evict(keep=target)
        return target

    def _evict(self, keep: Path) -> None:
        files = sorted(self.folder.glob("*.mp4"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= self.max_bytes:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)


def make_ident(channel: Channel, output: Path) -> Path:
    """A channel ident made locally with the offline backends, the title written on it."""
    with tempfile.TemporaryDirectory(prefix="webtv-ident-") as scratch:
        folder = Path(scratch)
        prompt = (
            f"an abstract channel ident for {channel.theme}, slow zoom in on the subject, "
            "glowing neon night lighting"
        )
        take = folder / "take.mp4"
        ProceduralTextToVideo().render(TakeRequest(prompt=prompt, seed=channel.seed), take)
        LanczosUpscaler().upscale(take, UpscaleRequest(prompt=prompt), folder / "u.mp4")
        frames = IDENT_FRAMES
        MotionInterpolator().interpolate(
            folder / "u.mp4", InterpolationRequest(frames=frames), folder / "i.mp4"
        )
        title = channel.title.replace("\\", "\\\\").replace("'", "\u2019").replace(":", "\\:")
        run_ffmpeg(
            ["-i", str(folder / "i.mp4"), "-vf",
             f"drawtext=font=Sans:text='{title}':fontsize=64:fontcolor=white:borderw=3:"
             "x=(w-text_w)/2:y=(h-text_h)/2", *INTERMEDIATE_X264, str(folder / "titled.mp4")],
            f"writing {channel.title!r} on the ident",
        )  # fmt: skip
        music = MusicRequest(prompt=prompt, mood=channel.music_mood, seed=channel.seed,
                             seconds=frames / BROADCAST_PROFILE.fps)  # fmt: skip
        ProceduralMusicGenerator().compose(music, folder / "m.flac")
        normalize_clip(folder / "titled.mp4", folder / "m.flac", frames, output, BROADCAST_PROFILE)
    return output


class ChannelPlayout:
    """Airs one channel until stopped: the next unaired clip of its playlist, else its recent
    clips again, else its ident. Never waits on S3 with nothing queued to air."""

    def __init__(
        self,
        store: MediaStore,
        channel: Channel,
        urls: list[str],
        data_dir: Path,
        cache_bytes: int,
        recent_loop: int = 10,
    ):
        self.store = store
        self.channel = channel
        self.folder = playout_folder(data_dir, channel.slug)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_file = state_path(data_dir, channel.slug)
        self.cache = ClipCache(self.folder / "cache", cache_bytes)
        self.urls = urls
        self.recent_loop = recent_loop
        self.stop = threading.Event()
        previous = read_state(data_dir, channel.slug)
        # A restarted playout goes on after the last clip it aired.
        self.aired_through = previous.aired_through if previous else 0
        self._replays = 0
        self._schedule: list[ScheduledClip] = []

    def _playlist(self) -> Playlist | None:
        try:
            raw = self.store.get_json(channel_prefix(self.channel.slug) + PLAYLIST_JSON)
        except (FileNotFoundError, StorageError):
            return None  # no playlist yet, or S3 away: recent clips or the ident cover
        return Playlist.model_validate(raw)

    def _next(self, playlist: Playlist | None) -> tuple[PlaylistEntry | None, list]:
        entries = playlist.entries if playlist else []
        unaired = [e for e in entries if ClipId.parse(e.clip_id).number > self.aired_through]
        if unaired:
            return unaired[0], unaired[1:]
        recent = [e for e in entries[-self.recent_loop :] if self.cache.path(e.clip_id).exists()]
        if recent:
            self._replays += 1
            return recent[self._replays % len(recent)], []
        return None, []

    def _source(self, entry: PlaylistEntry | None) -> tuple[Path, int, str, str]:
        """The file to air, its frames, its clip id and its prompt."""
        if entry is not None:
            key = channel_prefix(self.channel.slug) + entry.path
            frames = round(entry.duration_seconds * BROADCAST_PROFILE.fps)
            try:
                path = self.cache.fetch(self.store, entry, key)
                return path, frames, entry.clip_id, entry.prompt
            except (StorageError, FileNotFoundError):
                pass  # S3 away or the clip gone: air the ident instead
        ident = self.folder / f"{IDENT}.mp4"
        if not ident.exists():
            make_ident(self.channel, ident)
        return ident, IDENT_FRAMES, IDENT, f"{self.channel.title} ident"

    def run(self) -> None:
        publisher = Publisher(self.urls, self.folder / "publisher.log")
        started: float | None = None  # when the first clip reached the publisher
        try:
            while not self.stop.is_set():
                playlist = self._playlist()
                entry, later = self._next(playlist)
                path, frames, clip_id, prompt = self._source(entry)
                started = started or time.time()
                stream_seconds = publisher.offset - TIMELINE_START
                duration = publisher.air(path, frames, BROADCAST_PROFILE.fps)
                if clip_id != IDENT:
                    self.aired_through = max(self.aired_through, ClipId.parse(clip_id).number)
                self._schedule = [*self._schedule, ScheduledClip(
                    clip_id=clip_id, prompt=prompt, duration_seconds=duration,
                    starts_at=started + stream_seconds, stream_seconds=stream_seconds,
                )][-SCHEDULE_LENGTH:]  # fmt: skip
                self._write_state(started, later)
        finally:
            publisher.close()

    def _write_state(self, started: float, later: list[PlaylistEntry]) -> None:
        state = PlayoutState(
            channel=self.channel.slug,
            title=self.channel.title,
            publisher_started_at=started,
            updated_at=time.time(),
            aired_through=self.aired_through,
            unplayed_seconds=sum(entry.duration_seconds for entry in later),
            schedule=self._schedule,
            up_next=[
                GuideEntry(clip_id=e.clip_id, prompt=e.prompt, duration_seconds=e.duration_seconds)
                for e in later[:GUIDE_LENGTH]
            ],
        )
        partial = self.state_file.with_suffix(".part")
        partial.write_text(json.dumps(state.model_dump(), indent=2))
        partial.replace(self.state_file)  # readers never see half a file
