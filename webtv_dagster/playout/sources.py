"""The sources of what a playout airs next, tried in order behind one small interface
(`Source.pick`): CuedClip, a clip an operator asked for; UnairedClips, the playlist's next
unaired clip; Replays, a recent clip again; Filler, the channel's ident or a test card, so
that there is always something to air.

Each source only picks: the channel checks a pick against its record and remuxes it
(channel.py), and tells the filler when its pick did not remux (`Filler.refused`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import render_slate
from webtv_dagster.media.ffmpeg import MediaToolError
from webtv_dagster.playout.files import write_atomically
from webtv_dagster.playout.library import ClipLibrary
from webtv_dagster.playout.playlist import Playlist, PlaylistEntry
from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.playout.takedowns import Takedown

log = logging.getLogger(__name__)

IDENT = "ident"  # the clip id under which a filler airs (the ident, or the test card)
# Where a pick comes from (the schedule's and the as-run log's `origin`): a playlist clip's first
# airing, a replay, an operator's cue (which does not move the air's place in the playlist),
# or a filler: the ident or the test card.
NEW, REPLAY, CUED, IDENT_FILLER, TEST_CARD = "new", "replay", "cued", "ident", "test card"
SLATE_FRAMES = 128  # 5.333 s: two gapless units, like the ident
FETCH_AHEAD = 3  # unaired clips kept ready in the cache
FETCH_WAIT_SECONDS = 2.0  # how long the preparer waits for the next clip before airing a replay


@dataclass(frozen=True)
class Pick:
    """What a source offers to air next: a file to remux, and the playlist entry it is the
    verified copy of (None for a filler, which has no record to check it against)."""

    clip_id: str
    prompt: str
    path: Path
    origin: str  # NEW, REPLAY, CUED, IDENT_FILLER or TEST_CARD
    entry: PlaylistEntry | None = None

    @classmethod
    def of(cls, entry: PlaylistEntry, path: Path, origin: str) -> Pick:
        return cls(entry.clip_id, entry.prompt, path, origin, entry)


class Source(Protocol):
    def pick(
        self, playlist: Playlist | None, unaired: list[PlaylistEntry]
    ) -> tuple[Pick | None, list[PlaylistEntry]]:
        """What this source offers to air next (None: nothing), and the unaired entries left
        after it (a source may skip some, the reason recorded)."""
        ...


def cue_clip(data_dir: Path, slug: str, clip_id: str) -> None:
    """Asks the channel's playout to air the clip next (CuedClip); a later cue replaces it."""
    folder = PlayoutFolder.of(data_dir, slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    write_atomically(folder.cue, json.dumps({"clip_id": clip_id, "at": time.time()}).encode())


class CuedClip:
    """The clip an operator asked to air next (cue_clip), once its verified copy is ready
    (fetched first; the other sources cover meanwhile), then the cue is done. A cue of a clip
    not in the playlist, taken down or not airable is dropped, the reason logged. A cued clip
    does not move the channel's place in its playlist: one ahead of its turn airs again then."""

    def __init__(
        self,
        library: ClipLibrary,
        folder: PlayoutFolder,
        taken_down: Callable[[str], Takedown | None],
    ):
        self.library = library
        self.folder = folder
        self.taken_down = taken_down

    def pick(
        self, playlist: Playlist | None, unaired: list[PlaylistEntry]
    ) -> tuple[Pick | None, list[PlaylistEntry]]:
        try:
            clip_id = json.loads(self.folder.cue.read_text())["clip_id"]
        except FileNotFoundError:
            return None, unaired
        except (OSError, ValueError, KeyError, TypeError) as error:
            return self._drop(f"the cue is unreadable ({error})"), unaired
        entries = {e.clip_id: e for e in playlist.entries} if playlist else {}
        entry = entries.get(clip_id)
        if entry is None or self.taken_down(clip_id) or self.library.unairable(entry):
            return self._drop(f"{clip_id} cannot air (not in the playlist, or taken down)"), unaired
        self.library.want([entry, *unaired[: FETCH_AHEAD - 1]])
        path = self.library.wait_ready(entry, FETCH_WAIT_SECONDS)
        if path is None:
            return None, unaired  # not fetched yet: asked again at the next clip
        self.folder.cue.unlink(missing_ok=True)
        log.info("%s: airs next, as an operator asked", clip_id)
        return Pick.of(entry, path, CUED), unaired

    def _drop(self, why: str) -> None:
        log.warning("%s: cue dropped: %s", self.folder.path.name, why)
        self.folder.cue.unlink(missing_ok=True)


class UnairedClips:
    """The playlist's next unaired clip, when its verified copy is ready (waited for up to
    FETCH_WAIT_SECONDS: S3 slow or away, a replay covers meanwhile). An unaired clip that cannot
    air (taken down, or S3's copy does not match its record) is skipped, the reason kept."""

    def __init__(
        self,
        library: ClipLibrary,
        taken_down: Callable[[str], Takedown | None],
        skip: Callable[..., None],
    ):
        self.library = library
        self.taken_down = taken_down
        self.skip = skip

    def pick(
        self, playlist: Playlist | None, unaired: list[PlaylistEntry]
    ) -> tuple[Pick | None, list[PlaylistEntry]]:
        """The pick, or None, and the unaired entries after it (after those skipped)."""
        self.library.want([e for e in unaired if not self.taken_down(e.clip_id)][:FETCH_AHEAD])
        while unaired:
            entry, later = unaired[0], unaired[1:]
            if takedown := self.taken_down(entry.clip_id):
                self.skip(entry.clip_id, f"taken down: {takedown.reason}", taken_down=True)
                unaired = later
                continue  # before it was fetched, or after (the playlist rebuild comes later)
            problem = self.library.unairable(entry)
            if problem is None and (path := self.library.wait_ready(entry, FETCH_WAIT_SECONDS)):
                return Pick.of(entry, path, NEW), later
            if problem is None:
                break  # not fetched yet (S3 slow or away): a replay covers meanwhile
            self.skip(entry.clip_id, problem)
            unaired = later
        return None, unaired


class Replays:
    """The playlist's recent clips again, round robin, among those with a cached copy and not
    taken down; only the one picked is verified."""

    def __init__(
        self,
        library: ClipLibrary,
        taken_down: Callable[[str], Takedown | None],
        recent_loop: int,
    ):
        self.library = library
        self.taken_down = taken_down
        self.recent_loop = recent_loop
        self._replays = 0

    def pick(
        self, playlist: Playlist | None, unaired: list[PlaylistEntry]
    ) -> tuple[Pick | None, list[PlaylistEntry]]:
        entries = playlist.entries if playlist else []
        recent = [
            e
            for e in entries[-self.recent_loop :]
            if self.library.cache.path(e.clip_id).exists() and not self.taken_down(e.clip_id)
        ]
        for _ in recent:
            self._replays += 1
            entry = recent[self._replays % len(recent)]
            if path := self.library.ready(entry):
                return Pick.of(entry, path, REPLAY), unaired
        return None, unaired


class Filler:
    """Always something to air: the channel's ident (made by the pipeline, kept by the library),
    else a test card made here by FFmpeg alone (render_slate), kept in the playout's folder."""

    def __init__(self, library: ClipLibrary, folder: PlayoutFolder, title: str):
        self.library = library
        self.folder = folder
        self.prompt = f"{title} ident"
        self._slate_just_made = False

    def pick(
        self, playlist: Playlist | None, unaired: list[PlaylistEntry]
    ) -> tuple[Pick | None, list[PlaylistEntry]]:
        path, origin = self.library.ident(), IDENT_FILLER
        self._slate_just_made = False
        if path is None:
            path, origin = self.folder.slate, TEST_CARD
            if not path.exists():
                log.warning("%s: no ident yet: airing the test card", self.folder.path.name)
                render_slate(path, SLATE_FRAMES, BROADCAST_PROFILE)
                self._slate_just_made = True
        return Pick(IDENT, self.prompt, path, origin), unaired

    def refused(self, pick: Pick, reason: str) -> None:
        """The filler did not remux: the ident is dropped (the test card airs until a new one
        is made); a kept test card is made again, and one just made that does not remux stops
        the playout (FFmpeg itself is broken: its supervisor starts it again)."""
        if pick.path == self.folder.ident:
            self.library.drop_ident(reason)
            return
        self.folder.slate.unlink(missing_ok=True)
        if self._slate_just_made:
            raise MediaToolError(f"the test card of {self.folder.path.name} cannot air: {reason}")
        log.warning("the test card does not remux (%s): making it again", reason)
