"""Clips an operator pulled off air, with the reason: kept in the bucket beside the channel's
playlist (takedowns.json), so they stay off through restarts and rebuilds of the playlist. The
playout watches the file (TakedownWatch) and cuts a clip taken down while it airs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field

from webtv_dagster.clips import ClipId, channel_prefix
from webtv_dagster.storage import MediaStore

TAKEDOWNS_JSON = "takedowns.json"
TAKEN_DOWN = "taken down"  # a clip's `on_air` observation when an operator pulls it


class Takedown(BaseModel):
    clip_id: str
    reason: str = Field(min_length=1)
    taken_down_at: float


class Takedowns(BaseModel):
    clips: dict[str, Takedown] = Field(default_factory=dict)


def _key(slug: str) -> str:
    return channel_prefix(slug) + TAKEDOWNS_JSON


def read_takedowns(store: MediaStore, slug: str) -> Takedowns:
    try:
        return Takedowns.model_validate(store.get_json(_key(slug)))
    except FileNotFoundError:
        return Takedowns()


def take_down(store: MediaStore, clip: ClipId, reason: str) -> Takedown:
    """Records the clip as pulled off air (a second take-down replaces the reason)."""
    if not reason.strip():
        raise ValueError(f"say why {clip.key} is taken down: the reason is recorded")
    takedowns = read_takedowns(store, clip.channel)
    takedown = Takedown(clip_id=clip.key, reason=reason.strip(), taken_down_at=time.time())
    takedowns.clips[clip.key] = takedown
    store.put_json(_key(clip.channel), takedowns.model_dump())
    return takedown


def restore(store: MediaStore, clip: ClipId) -> Takedown | None:
    """Puts a taken-down clip back; returns its take-down, or None if it was not taken down."""
    takedowns = read_takedowns(store, clip.channel)
    removed = takedowns.clips.pop(clip.key, None)
    if removed is not None:
        store.put_json(_key(clip.channel), takedowns.model_dump())
    return removed


class TakedownWatch:
    """A channel's take-downs as last read, for a playout: read again only when the file changed
    (a conditional GET: cheap enough to ask several times a second), and kept in a local copy so
    that a playout restarted while S3 is away still knows them."""

    def __init__(self, store: MediaStore, slug: str, copy: Path):
        self.store = store
        self.key = _key(slug)
        self.copy = copy
        self.etag = ""
        self.clips: dict[str, Takedown] = self._saved()
        self.answered = threading.Event()  # set once S3 was asked (answering or not)
        # When this watch first knew of each take-down (a clip restored, then taken down
        # again, is a new take-down).
        self.known_since = dict.fromkeys(self.clips, time.time())

    def _saved(self) -> dict[str, Takedown]:
        try:
            return Takedowns.model_validate_json(self.copy.read_bytes()).clips
        except (FileNotFoundError, ValueError):
            return {}

    def refresh(self) -> bool:
        """Reads the file if it changed; returns whether the take-downs did. Raises StorageError
        (S3 away) or ValueError (a bad document): the take-downs known so far stay."""
        try:
            try:
                changed = self.store.get_bytes_if_changed(self.key, self.etag)
            except FileNotFoundError:
                changed = (Takedowns().model_dump_json().encode(), "")
        finally:
            self.answered.set()
        if changed is None:
            return False
        body, etag = changed
        clips = Takedowns.model_validate_json(body).clips
        self.etag = etag
        if clips == self.clips:
            return False
        now = time.time()
        self.known_since = {clip: self.known_since.get(clip, now) for clip in clips}
        self.clips = clips  # replaced whole: readers in other threads see one or the other
        partial = self.copy.with_suffix(".part")
        partial.write_bytes(body)
        partial.replace(self.copy)
        return True
