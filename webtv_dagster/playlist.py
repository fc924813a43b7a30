"""A channel's playlist: its airable clips in order, as JSON and as an ffconcat file.

A clip is airable once its broadcast record exists (written after the broadcast clip itself,
and only if it passed its quality checks), unless an operator took it down.
The ffconcat file names clips relative to the channel's folder, so it plays from any copy of
that folder (a local cache or a mount of the bucket).
"""

from __future__ import annotations

from pydantic import BaseModel

from webtv_dagster import clips
from webtv_dagster.channels import Channel
from webtv_dagster.clips import CLIP_KEY_PATTERN, channel_prefix
from webtv_dagster.storage import MediaStore, StoredObject
from webtv_dagster.takedowns import read_takedowns

PLAYLIST_JSON = "playlist.json"
PLAYLIST_FFCONCAT = "playlist.ffconcat"


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


def build_playlist(store: MediaStore, channel: Channel) -> Playlist:
    prefix = channel_prefix(channel.slug)
    records = [
        key
        for key in store.list_keys(f"{prefix}clips/")
        if key.endswith("/" + clips.BROADCAST_RECORD)
    ]

    def clip_number(key: str) -> int:
        match = CLIP_KEY_PATTERN.match(key.split("/")[-2])
        return int(match["number"]) if match else -1

    taken_down = read_takedowns(store, channel.slug).clips
    entries = []
    for key in sorted(records, key=clip_number):
        if key.split("/")[-2] in taken_down:
            continue
        record = store.get_json(key)
        entries.append(
            PlaylistEntry(
                clip_id=record["clip_id"],
                prompt=record["prompt"],
                seed=record["seed"],
                duration_seconds=record["duration_seconds"],
                uri=record["uri"],
                path=record["key"].removeprefix(prefix),
                size_bytes=record.get("size_bytes"),
                sha256=record.get("sha256"),
            )
        )
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
