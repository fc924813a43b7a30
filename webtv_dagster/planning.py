"""How many clips a channel needs, and how clip requests are grouped into runs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId


def clips_needed(channel: Channel, unaired_clips: int) -> int:
    """Clips to add so that unaired content covers the channel's `ahead_seconds`."""
    deficit = channel.ahead_seconds - unaired_clips * channel.clip_seconds
    return max(0, math.ceil(deficit / channel.clip_seconds - 1e-9))


def run_batches(clips: Sequence[ClipId], clips_per_run: int) -> list[list[ClipId]]:
    """Consecutive clips grouped so that each run makes at most `clips_per_run` of them."""
    ordered = sorted(clips, key=lambda clip: clip.number)
    return [ordered[i : i + clips_per_run] for i in range(0, len(ordered), clips_per_run)]
