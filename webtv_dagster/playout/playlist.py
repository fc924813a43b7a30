"""A channel's playlist: its airable clips in order, as JSON and as an ffconcat file.

A clip is airable once its broadcast record exists (written after the broadcast clip itself,
and only if it passed its quality checks), unless an operator took it down.
The playlist lists a window of clips, not the channel's history: the clips past air and the last
REPLAY_CLIPS aired (the playout replays the last ten when it runs dry), so that building it,
and reading it every two seconds in the playout, costs the same in the third month as on the
first day.
The ffconcat file names clips relative to the channel's folder, so it plays from any copy of
that folder (a local cache or a mount of the bucket).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from webtv_dagster import clips
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId, channel_prefix
from webtv_dagster.playout.takedowns import read_takedowns
from webtv_dagster.storage import ObjectReader, StoredObject

if TYPE_CHECKING:  # the playout only reads, and never loads boto3
    from webtv_dagster.media_store import MediaStore

PLAYLIST_JSON = "playlist.json"
PLAYLIST_FFCONCAT = "playlist.ffconcat"
REPLAY_CLIPS = 20  # aired clips kept listed


class PlaylistEntry(BaseModel):
    clip_id: str
    prompt: str
    seed: int
    duration_seconds: float
    uri: str
    path: str  # relative to the channel's folder
    # What the playout checks a copy against before it airs (absent in records written before
    # they were kept).
    size_bytes: int | None = None
    sha256: str | None = None
    requested_by: str | None = None  # the viewer whose shot request the clip was made of


class Playlist(BaseModel):
    channel: str
    title: str
    entries: list[PlaylistEntry]

    @property
    def total_seconds(self) -> float:
        return sum(entry.duration_seconds for entry in self.entries)

    def ffconcat(self) -> str:
        lines = ["ffconcat version 1.0"]
        for entry in self.entries:
            lines += [f"file '{entry.path}'", f"duration {entry.duration_seconds:.6f}"]
        return "\n".join(lines) + "\n"


def unaired_entries(playlist: Playlist | None, through: int) -> list[PlaylistEntry]:
    """The playlist's clips after clip number `through`, in order: what airs next."""
    entries = playlist.entries if playlist else []
    return [e for e in entries if ClipId.parse(e.clip_id).number > through]


def playlist_window(aired_through: int, highest: int, backlog_cap: int) -> range:
    """The clip numbers a playlist lists: the last REPLAY_CLIPS aired and every clip after them
    up to the channel's highest, at most `backlog_cap` of those past air."""
    start = max(1, aired_through - REPLAY_CLIPS + 1, highest - backlog_cap - REPLAY_CLIPS + 1)
    return range(start, highest + 1)


def build_playlist(store: ObjectReader, channel: Channel, window: range) -> Playlist:
    """The airable clips among the clip numbers of `window`, in clip order: their broadcast
    records are read (a few at once), the others do not exist yet, failed QC or were removed."""
    prefix = channel_prefix(channel.slug)
    taken_down = read_takedowns(store, channel.slug).clips
    listed = [ClipId(channel=channel.slug, number=number) for number in window]
    listed = [clip for clip in listed if clip.key not in taken_down]

    def record_of(clip: ClipId) -> dict[str, Any] | None:
        try:
            return store.get_json(clip.object_key(clips.BROADCAST_RECORD))
        except FileNotFoundError:
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        records = [record for record in pool.map(record_of, listed) if record is not None]
    entries = [
        PlaylistEntry(
            clip_id=record["clip_id"],
            prompt=record["prompt"],
            seed=record["seed"],
            duration_seconds=record["duration_seconds"],
            uri=record["uri"],
            path=record["key"].removeprefix(prefix),
            size_bytes=record.get("size_bytes"),
            sha256=record.get("sha256"),
            requested_by=record.get("requested_by"),
        )
        for record in records
    ]
    return Playlist(channel=channel.slug, title=channel.title, entries=entries)


def publish_playlist(store: MediaStore, playlist: Playlist) -> tuple[StoredObject, StoredObject]:
    prefix = channel_prefix(playlist.channel)
    as_json = store.put_json(
        prefix + PLAYLIST_JSON,
        {**playlist.model_dump(), "total_seconds": playlist.total_seconds},
    )
    as_ffconcat = store.put_bytes(
        prefix + PLAYLIST_FFCONCAT, playlist.ffconcat().encode("utf-8"), "text/plain"
    )
    return as_json, as_ffconcat
