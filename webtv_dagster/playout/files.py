"""The files a playout keeps in its folder, written so that a reader never sees half of one and
a full disk leaves the last good copy in place, and nothing else behind."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

DISK_WARNING_EVERY_SECONDS = 60.0


def write_atomically(path: Path, data: bytes) -> None:
    """Writes `data` to `path` in one step: a partial file renamed over it. A failed write (a
    full disk: OSError, raised) removes the partial file; the last good copy stays."""
    partial = path.with_suffix(".part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


class DiskTrouble:
    """Failed writes of a process that goes on without them (a full disk must not stop air):
    logged once a minute rather than on every write, and logged again once writes succeed."""

    def __init__(self, what: str):
        self.what = what
        self._since: float | None = None
        self._logged = 0.0
        self._failures = 0

    def failed(self, error: OSError) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = now
        if now - self._logged >= DISK_WARNING_EVERY_SECONDS:
            self._logged = now
            log.warning(
                "%s: %d writes failed (%s); going on without them until the disk has room",
                self.what,
                self._failures,
                error,
            )

    def succeeded(self) -> None:
        if self._since is not None:
            log.info(
                "%s: writing again after %.0f s (%d writes failed)",
                self.what,
                time.monotonic() - self._since,
                self._failures,
            )
            self._since, self._failures, self._logged = None, 0, 0.0
