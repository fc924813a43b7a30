"""What a playout can air without asking anyone: the channel's latest playlist, verified local
copies of its clips and a copy of its ident, kept current by a background thread. A slow, hung
or dead S3 only means the library stops growing; the air path never waits on it."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

from webtv_dagster.clips import channel_prefix, ident_key
from webtv_dagster.playout.files import DiskTrouble, write_atomically
from webtv_dagster.playout.playlist import PLAYLIST_JSON, Playlist, PlaylistEntry
from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.storage import ObjectReader, StorageError, file_sha256

log = logging.getLogger(__name__)

IDENT_REFRESH_SECONDS = 60.0  # how often a kept ident is checked for a newer one (conditional GET)


def mismatch(path: Path, entry: PlaylistEntry) -> str | None:
    """Why the file is not the clip its record describes (size, then digest), or None. Records
    written before size and digest were kept are taken as they are: the remux still checks
    them."""
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        return f"{size} bytes where its record says {entry.size_bytes}"
    if entry.sha256 is not None and file_sha256(path) != entry.sha256:
        return "its SHA-256 differs from its record's"
    return None


def saved_playlist(folder: PlayoutFolder) -> Playlist | None:
    """The last good playlist a playout kept in its folder, or None: none yet, or unreadable.
    The viewer service and the chat bot read it too, rather than S3."""
    try:
        return Playlist.model_validate_json(folder.playlist.read_text())
    except (OSError, ValueError):
        return None


class ClipCache:
    """Local copies of clips, bounded by size, least recently used evicted first."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.mp4"

    def store(self, partial: Path, clip_id: str) -> Path:
        target = self.path(clip_id)
        partial.replace(target)
        self._evict(keep=target)
        return target

    def touch(self, path: Path) -> None:
        path.touch()  # most recently used

    def _evict(self, keep: Path) -> None:
        files = sorted(self.folder.glob("*.mp4"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= self.max_bytes:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)


class ClipLibrary:
    """The channel's playlist, the clips the playout asked to have ready, and the channel's
    ident, fetched and verified in the background.

    The last playlist read is kept on disk too, so a playout restarted while S3 is away still
    knows what it has cached. A clip whose stored object does not match its record (size,
    SHA-256) is fetched once more; if S3's copy is itself wrong the clip is unairable until
    its record changes (a rerun writes a new one). The ident (made by the `channel_ident`
    asset) is kept in the folder once fetched, and fetched again when S3's copy changes."""

    def __init__(
        self,
        store: ObjectReader,
        slug: str,
        folder: PlayoutFolder,
        cache_bytes: int,
        refresh_seconds: float = 2.0,
    ):
        self.store = store
        self.slug = slug
        self.folder = folder
        self.cache = ClipCache(folder.cache, cache_bytes)
        self.refresh_seconds = refresh_seconds
        self.playlist: Playlist | None = saved_playlist(folder)
        # The ETag of S3's ident when it was last fetched (or found unairable): asked again
        # with it, S3 answers with no body until the ident is made again.
        self._ident_etag = ""
        self._ident_checked = -math.inf
        self._wanted: list[PlaylistEntry] = []
        self._unairable: dict[str, tuple[str | None, str]] = {}  # clip: (its sha256, why)
        self._wake = threading.Event()
        self.refreshed = threading.Event()  # set once the playlist was first asked for
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_current, daemon=True)
        self._disk = DiskTrouble(f"{slug}: its clip cache")

    def start(self) -> ClipLibrary:
        self._thread.start()
        return self

    def want(self, entries: list[PlaylistEntry]) -> None:
        """The clips to have ready next, in order."""
        if [e.clip_id for e in entries] != [e.clip_id for e in self._wanted]:
            self._wanted = entries
            self._wake.set()

    def unairable(self, entry: PlaylistEntry) -> str | None:
        """Why the clip cannot air (S3's copy does not match its record), or None."""
        sha256, reason = self._unairable.get(entry.clip_id, (None, None))
        return reason if reason and sha256 == entry.sha256 else None

    def mark_unairable(self, entry: PlaylistEntry, reason: str) -> None:
        self._unairable[entry.clip_id] = (entry.sha256, reason)
        self.cache.path(entry.clip_id).unlink(missing_ok=True)

    def ready(self, entry: PlaylistEntry) -> Path | None:
        """The verified local copy of the clip, or None. A copy that no longer matches its
        record (a disk fault) is dropped and fetched again."""
        path = self.cache.path(entry.clip_id)
        if not path.exists() or self.unairable(entry):
            return None
        problem = mismatch(path, entry)
        if problem:
            log.warning("%s: cached copy dropped (%s); fetching it again", entry.clip_id, problem)
            path.unlink(missing_ok=True)
            self._wake.set()
            return None
        self.cache.touch(path)
        return path

    def wait_ready(self, entry: PlaylistEntry, timeout: float) -> Path | None:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            path = self.ready(entry)
            if path or self.unairable(entry) or time.monotonic() >= deadline:
                return path
            time.sleep(0.05)
        return None

    def ident(self) -> Path | None:
        """The local copy of the channel's ident, or None (not fetched yet, or dropped)."""
        path = self.folder.ident
        return path if path.exists() else None

    def drop_ident(self, reason: str) -> None:
        """Drops the local copy of the ident, which cannot air; it is fetched again only once
        S3's copy changes (the ident is made again)."""
        log.warning("%s: the ident is dropped (%s)", self.slug, reason)
        self.folder.ident.unlink(missing_ok=True)

    def _keep_current(self) -> None:
        while not self.stop.is_set():
            try:
                self._refresh()
            except Exception:  # whatever it was, the library must not stop growing for good
                log.exception("%s: the library's round failed; trying again", self.slug)
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()

    def _refresh(self) -> None:
        self._refresh_playlist()
        self._refresh_ident()
        self.refreshed.set()
        for entry in list(self._wanted):
            if self.stop.is_set():
                return
            if not self.cache.path(entry.clip_id).exists() and not self.unairable(entry):
                self._fetch(entry)

    def _refresh_playlist(self) -> None:
        try:
            raw = self.store.get_bytes(channel_prefix(self.slug) + PLAYLIST_JSON)
            playlist = Playlist.model_validate_json(raw)
        except (FileNotFoundError, StorageError, ValueError) as error:
            log.debug("%s: playlist not refreshed: %s", self.slug, error)
            return  # no playlist yet, S3 away, or a bad document: keep the last good one
        if playlist != self.playlist:
            self.playlist = playlist
            try:
                write_atomically(self.folder.playlist, raw)
            except OSError as error:  # a full disk: the playlist is known all the same
                self._disk.failed(error)

    def _refresh_ident(self) -> None:
        """Fetches the ident when there is no local copy, or S3's changed (asked every
        IDENT_REFRESH_SECONDS while a copy is kept)."""
        now = time.monotonic()
        if self.ident() and now - self._ident_checked < IDENT_REFRESH_SECONDS:
            return
        self._ident_checked = now
        try:
            changed = self.store.get_bytes_if_changed(ident_key(self.slug), self._ident_etag)
        except (FileNotFoundError, StorageError) as error:
            log.debug("%s: ident not fetched: %s", self.slug, error)
            return  # not made yet, or S3 away: the copy kept (or the slate) airs meanwhile
        if changed is None:
            return
        body, etag = changed
        try:
            write_atomically(self.folder.ident, body)
        except OSError as error:  # a full disk: fetched again on the next round
            self._disk.failed(error)
            return
        self._ident_etag = etag
        log.info("%s: ident fetched (%d bytes)", self.slug, len(body))

    def _fetch(self, entry: PlaylistEntry) -> None:
        partial = self.cache.folder / f"{entry.clip_id}.part"
        for attempt in (1, 2):
            try:
                self.store.download_file(channel_prefix(self.slug) + entry.path, partial)
            except (StorageError, FileNotFoundError) as error:
                log.warning("%s: not fetched: %s", entry.clip_id, error)
                partial.unlink(missing_ok=True)
                return  # S3 away or the clip gone: tried again on the next round
            except OSError as error:  # a full disk: the cache airs what it holds meanwhile
                partial.unlink(missing_ok=True)
                self._disk.failed(error)
                return
            problem = mismatch(partial, entry)
            if problem is None:
                self.cache.store(partial, entry.clip_id)
                self._disk.succeeded()
                return
            partial.unlink(missing_ok=True)
            if attempt == 2:
                self.mark_unairable(entry, f"the stored clip is {problem}")
