"""Retention: which of a channel's clips to remove from the bucket, and removing them.

A channel's `retention:` keeps clips for `keep_days` and/or within `keep_gb` of storage; the
oldest clips go first. A clip that has not aired yet is never removed (it is in the playlist
ahead of air, or still being made), nor one of the clips the playout replays when the playlist
runs dry, whatever the policy says.

Intermediates (the upscaled and interpolated takes) go sooner: `keep_intermediates_hours` after
the clip's broadcast version passed quality control, whether it aired or not. What they were
stays in Dagster's metadata and in their previews.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, Field

from webtv_dagster import clips
from webtv_dagster.channels import RetentionPolicy
from webtv_dagster.clips import ClipId, channel_prefix
from webtv_dagster.media_store import MediaStore
from webtv_dagster.storage import ListedObject

INTERMEDIATES = (clips.UPSCALED_TAKE, clips.INTERPOLATED_CLIP)


class StoredClip(BaseModel):
    clip_id: str
    number: int
    size_bytes: int
    made_at: float = Field(description="when its newest object was written (Unix time)")
    keys: list[str]
    passed_at: float | None = Field(
        None, description="when its broadcast record was written: it passed QC (Unix time)"
    )
    intermediate_bytes: int = 0


def stored_clips(store: MediaStore, slug: str) -> list[StoredClip]:
    """The channel's clips in the bucket, oldest number first, with their objects and size."""
    objects: dict[ClipId, dict[str, ListedObject]] = defaultdict(dict)
    for listed in store.list_objects(f"{channel_prefix(slug)}clips/"):
        try:
            clip, name = ClipId.from_object_key(listed.key)
        except ValueError:
            continue  # not a clip's object
        objects[clip][name] = listed
    stored = []
    for clip, by_name in objects.items():
        items = list(by_name.values())
        record = by_name.get(clips.BROADCAST_RECORD)
        stored.append(
            StoredClip(
                clip_id=clip.key,
                number=clip.number,
                size_bytes=sum(item.size_bytes for item in items),
                made_at=max(item.modified_at for item in items),
                keys=[item.key for item in items],
                passed_at=record.modified_at if record else None,
                intermediate_bytes=sum(
                    by_name[name].size_bytes for name in INTERMEDIATES if name in by_name
                ),
            )
        )
    return sorted(stored, key=lambda clip: clip.number)


def clips_to_remove(
    clips: list[StoredClip], policy: RetentionPolicy, aired_through: int, now: float
) -> list[StoredClip]:
    """The clips the policy removes: aired ones only, oldest first, outside the replay set."""
    aired = [clip for clip in clips if clip.number <= aired_through]
    removable = aired[: max(0, len(aired) - policy.protect_recent)]
    chosen: dict[str, StoredClip] = {}
    if policy.keep_days is not None:
        cutoff = now - policy.keep_days * 86_400
        chosen.update({clip.clip_id: clip for clip in removable if clip.made_at < cutoff})
    if policy.keep_gb is not None:
        total = sum(clip.size_bytes for clip in clips if clip.clip_id not in chosen)
        for clip in removable:
            if total <= policy.keep_gb * 1e9:
                break
            if clip.clip_id not in chosen:
                chosen[clip.clip_id] = clip
                total -= clip.size_bytes
    return sorted(chosen.values(), key=lambda clip: clip.number)


def intermediates_to_remove(
    clips: list[StoredClip], policy: RetentionPolicy, now: float
) -> list[StoredClip]:
    """The clips whose intermediates the policy removes now: those whose broadcast version
    passed QC more than `keep_intermediates_hours` ago and that still hold intermediates."""
    if policy.keep_intermediates_hours is None:
        return []
    cutoff = now - policy.keep_intermediates_hours * 3_600
    return [
        clip
        for clip in clips
        if clip.intermediate_bytes and clip.passed_at is not None and clip.passed_at < cutoff
    ]


def remove_intermediates(store: MediaStore, clip: StoredClip) -> None:
    for name in INTERMEDIATES:
        store.delete(ClipId.parse(clip.clip_id).object_key(name))


def remove_clip(store: MediaStore, clip: StoredClip) -> None:
    """Deletes the clip's broadcast record first, so that no playlist built meanwhile lists a
    clip whose media is going."""
    record = ClipId.parse(clip.clip_id).object_key(clips.BROADCAST_RECORD)
    for key in sorted(clip.keys, key=lambda key: key != record):
        store.delete(key)
