"""Clips an operator pulled off air, with the reason: kept in the bucket beside the channel's
playlist (takedowns.json), so they stay off through restarts and rebuilds of the playlist."""

from __future__ import annotations

import time

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
