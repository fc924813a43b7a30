"""How many clips a channel needs, how clip requests are grouped into runs, and how urgent each
run is."""

from __future__ import annotations

import math
from collections.abc import Sequence

from webtv_dagster.channels import MAX_CLIPS_AT_ONCE, Channel
from webtv_dagster.clips import ClipId

# Clips a channel may hold past air (made, in flight or planned). It bounds every query the
# planner makes, and a backlog no playout will reach for days is a mistake, not a buffer.
MAX_BACKLOG_CLIPS = 2_000


class BacklogFull(ValueError):
    """Adding these clips would take a channel's backlog past MAX_BACKLOG_CLIPS."""


def check_clip_count(count: int) -> None:
    """Clips added at once by hand (`webtv add-clips`, add_clips_job) are between 1 and
    MAX_CLIPS_AT_ONCE."""
    if not 1 <= count <= MAX_CLIPS_AT_ONCE:
        raise ValueError(f"count must be between 1 and {MAX_CLIPS_AT_ONCE}, not {count}")


def clips_needed(channel: Channel, unaired_clips: int, backlog: int, clips_per_run: int) -> int:
    """Clips to add so that unaired content covers the channel's `ahead_seconds`, within the
    room the backlog cap leaves. The buffer is refilled a whole run at a time: topping it up
    clip by clip, every tick, made runs of one or two clips, each paying a run's start and
    Dagster's per-run events."""
    deficit = channel.ahead_seconds - unaired_clips * channel.clip_seconds
    wanted = max(0, math.ceil(deficit / channel.clip_seconds - 1e-9))
    whole_runs = math.ceil(wanted / clips_per_run) * clips_per_run
    return min(whole_runs, max(0, MAX_BACKLOG_CLIPS - backlog))


def run_batches(
    clips: Sequence[ClipId],
    clips_per_run: int,
    *,
    start_with_one: bool = False,
    scene_clips: int = 1,
) -> list[list[ClipId]]:
    """Consecutive clips grouped so that each run makes at most `clips_per_run` of them; with
    `start_with_one` the first run makes one clip (one scene) only, so that a channel with
    nothing ahead airs as soon as it is made. A scene is never split between runs (a run
    makes its clips in order): runs hold whole scenes, at least one each."""
    ordered = sorted(clips, key=lambda clip: clip.number)
    scenes: list[list[ClipId]] = []
    for clip in ordered:
        scene = (clip.number - 1) // scene_clips
        if scenes and (scenes[-1][-1].number - 1) // scene_clips == scene:
            scenes[-1].append(clip)
        else:
            scenes.append([clip])
    batches: list[list[ClipId]] = []
    for index, scene in enumerate(scenes):
        first_alone = start_with_one and index <= 1
        if batches and not first_alone and len(batches[-1]) + len(scene) <= clips_per_run:
            batches[-1].extend(scene)
        else:
            batches.append(list(scene))
    return batches


def whole_scenes(count: int, highest: int, scene_clips: int) -> int:
    """`count` clips to add after clip `highest`, rounded up to end a scene."""
    if count == 0 or scene_clips == 1:
        return count
    return math.ceil((highest + count) / scene_clips) * scene_clips - highest


def run_priority(deadline: float) -> int:
    """Dagster's run priority (`dagster/priority`, higher dequeues first) for a run whose clips
    a channel needs on air by `deadline` (Unix time): earliest deadline first, across channels.
    Clip runs sort below every other run (priority 0: playlists, playout restarts)."""
    return -max(1, math.ceil(deadline))
