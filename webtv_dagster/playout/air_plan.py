"""When each clip is planned to air: the playout's schedule (clips queued to the publisher, with
the wall time their first frame goes out), then the playlist's unaired clips, each starting
where the one before it stops. The programme guide, the viewer's request list and the chat
bot's announcements all read it."""

from __future__ import annotations

import time

from pydantic import BaseModel

from webtv_dagster.playout.playlist import Playlist, unaired_entries
from webtv_dagster.playout.state import PlayoutState

MAX_PLANNED = 200  # clips planned at most: hours of air


class PlannedClip(BaseModel):
    clip_id: str
    prompt: str
    starts_at: float
    duration_seconds: float
    requested_by: str | None = None

    @property
    def stops_at(self) -> float:
        return self.starts_at + self.duration_seconds


def planned_air(
    state: PlayoutState | None, playlist: Playlist | None, now: float | None = None
) -> list[PlannedClip]:
    """The clip on air now and the clips after it, in air order, with planned start times (at
    most MAX_PLANNED). Without a state (the channel never aired) the playlist's clips are planned
    from `now`."""
    now = time.time() if now is None else now
    entries = playlist.entries if playlist else []
    credits = {entry.clip_id: entry.requested_by for entry in entries}
    planned = [
        PlannedClip(
            clip_id=clip.clip_id,
            prompt=clip.prompt,
            starts_at=clip.starts_at,
            duration_seconds=clip.duration_seconds,
            requested_by=credits.get(clip.clip_id),
        )
        for clip in (state.schedule if state else [])
        if clip.starts_at + clip.duration_seconds > now
    ]
    starts_at = planned[-1].stops_at if planned else now
    for entry in unaired_entries(playlist, state.aired_through if state else 0):
        if len(planned) >= MAX_PLANNED:
            break
        planned.append(
            PlannedClip(
                clip_id=entry.clip_id,
                prompt=entry.prompt,
                starts_at=starts_at,
                duration_seconds=entry.duration_seconds,
                requested_by=entry.requested_by,
            )
        )
        starts_at += entry.duration_seconds
    return planned[:MAX_PLANNED]
