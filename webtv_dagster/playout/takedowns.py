"""Clips an operator pulled off air, with the reason: kept in the bucket beside the channel's
playlist (takedowns.json), so they stay off through restarts and rebuilds of the playlist. The
playout watches the file (TakedownWatch) and cuts a clip taken down while it airs.

Every change is a conditional write on the file's ETag, tried again when another writer won,
so take-downs made at once (the viewer's dump button, operators' jobs) are all kept; each clip
keeps the history of its take-downs and restores."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from webtv_dagster.clips import ClipId, channel_prefix
from webtv_dagster.playout.files import write_atomically
from webtv_dagster.storage import ObjectReader

if TYPE_CHECKING:  # the playout only reads, and never loads boto3
    from webtv_dagster.media_store import MediaStore

log = logging.getLogger(__name__)

TAKEDOWNS_JSON = "takedowns.json"
TAKEN_DOWN = "taken down"  # a clip's `on_air` observation when an operator pulls it
HISTORY_PER_CLIP = 20  # earlier take-downs kept per clip


class TakedownRecord(BaseModel):
    """One take-down of a clip, as it was: why, when, and when it was put back (None: it was
    taken down again before, with another reason)."""

    reason: str
    taken_down_at: float
    restored_at: float | None = None


class Takedown(BaseModel):
    clip_id: str
    reason: str = Field(min_length=1)
    taken_down_at: float
    earlier: list[TakedownRecord] = Field(
        default_factory=list, description="the clip's earlier take-downs, oldest first"
    )

    def record(self, restored_at: float | None = None) -> TakedownRecord:
        return TakedownRecord(
            reason=self.reason, taken_down_at=self.taken_down_at, restored_at=restored_at
        )


class Takedowns(BaseModel):
    clips: dict[str, Takedown] = Field(default_factory=dict, description="clips off air now")
    restored: dict[str, list[TakedownRecord]] = Field(
        default_factory=dict, description="the take-downs of clips put back on air since"
    )


def _key(slug: str) -> str:
    return channel_prefix(slug) + TAKEDOWNS_JSON


def read_takedowns(store: ObjectReader, slug: str) -> Takedowns:
    try:
        return Takedowns.model_validate(store.get_json(_key(slug)))
    except FileNotFoundError:
        return Takedowns()


def _update(store: MediaStore, slug: str, change: Callable[[Takedowns], None]) -> Takedowns:
    """Changes the channel's take-downs in place of any concurrent change (a conditional write,
    tried again when another writer won: viewers' dumps and operators' jobs at once all land)."""

    def changed(document: dict | None) -> dict:
        takedowns = Takedowns.model_validate(document or {})
        change(takedowns)
        return takedowns.model_dump()

    return Takedowns.model_validate(store.update_json(_key(slug), changed))


def take_down(store: MediaStore, clip: ClipId, reason: str) -> Takedown:
    """Records the clip as pulled off air; returns once it is recorded. Its earlier take-downs
    (a second one's, or those before it was put back) are kept with it."""
    if not reason.strip():
        raise ValueError(f"say why {clip.key} is taken down: the reason is recorded")
    now = time.time()

    def record(takedowns: Takedowns) -> None:
        if current := takedowns.clips.get(clip.key):
            earlier = [*current.earlier, current.record()]
        else:
            earlier = takedowns.restored.pop(clip.key, [])
        takedowns.clips[clip.key] = Takedown(
            clip_id=clip.key,
            reason=reason.strip(),
            taken_down_at=now,
            earlier=earlier[-HISTORY_PER_CLIP:],
        )

    return _update(store, clip.channel, record).clips[clip.key]


def restore(store: MediaStore, clip: ClipId) -> Takedown | None:
    """Puts a taken-down clip back; returns its take-down, or None if it was not taken down.
    The take-down is kept among the clip's restored ones."""
    if clip.key not in read_takedowns(store, clip.channel).clips:
        return None
    restored_at = time.time()
    removed: Takedown | None = None

    def put_back(takedowns: Takedowns) -> None:
        nonlocal removed  # as the write that landed found it
        removed = takedowns.clips.pop(clip.key, None)
        if removed is not None:
            history = [*removed.earlier, removed.record(restored_at)]
            takedowns.restored[clip.key] = history[-HISTORY_PER_CLIP:]

    _update(store, clip.channel, put_back)
    return removed


def forget_takedowns(store: MediaStore, slug: str, clip_ids: set[str]) -> None:
    """Forgets the take-downs of clips that are gone from the bucket (retention), so that the
    file holds what can still air or was aired lately."""
    known = read_takedowns(store, slug)
    if not clip_ids & (set(known.clips) | set(known.restored)):
        return

    def forget(takedowns: Takedowns) -> None:
        for clip_id in clip_ids:
            takedowns.clips.pop(clip_id, None)
            takedowns.restored.pop(clip_id, None)

    _update(store, slug, forget)


class TakedownWatch:
    """A channel's take-downs as last read, for a playout: read again only when the file changed
    (a conditional GET: cheap enough to ask several times a second), and kept in a local copy so
    that a playout restarted while S3 is away still knows them."""

    def __init__(self, store: ObjectReader, slug: str, copy: Path):
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
        try:
            write_atomically(self.copy, body)
        except OSError as error:  # a full disk: the take-downs hold, in memory, all the same
            log.warning("take-downs not kept in %s: %s", self.copy, error)
        return True
