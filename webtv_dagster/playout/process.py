"""A channel's playout process (`webtv playout <channel>`): its lock, its pid and its status.

A playout holds an exclusive lock on `playout.lock` in its folder for as long as it runs, so
whether a channel is up is a question for the kernel, not for a pid file that may be stale: a
process that dies, however it dies, drops its lock. The pid file beside it says whom to signal.
Starting and stopping playouts is the stack's (stack/playouts.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from webtv_dagster.playout.state import PlayoutFolder, read_state


class PlayoutStartError(RuntimeError):
    """The playout process exited or did not go on air while starting."""


@dataclass(frozen=True)
class PlayoutStatus:
    slug: str
    running: bool
    pid: int | None
    seconds_since_update: float | None  # since the playout last queued a clip, or started
    stopped_by_operator: bool

    def needs_start(self, stale_after: float) -> bool:
        """Whether the watchdog should (re)start this channel."""
        if self.stopped_by_operator:
            return False
        stale = self.seconds_since_update is None or self.seconds_since_update > stale_after
        return not self.running or stale


@contextmanager
def hold_playout_lock(data_dir: Path, slug: str):
    """Held by the playout process while it runs; refuses a second playout of the channel."""
    folder = PlayoutFolder.of(data_dir, slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    with folder.lock.open("a") as lock:
        deadline = time.monotonic() + 2  # a status check holds the lock for a moment
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pid = playout_pid(data_dir, slug)
                    raise PlayoutStartError(f"{slug} is already on air (pid {pid})") from None
                time.sleep(0.05)
        record = {"pid": os.getpid(), "started_at": time.time()}
        folder.pid.write_text(json.dumps(record))
        try:
            yield
        finally:
            folder.pid.unlink(missing_ok=True)


def playout_lock_is_held(data_dir: Path, slug: str) -> bool:
    path = PlayoutFolder.of(data_dir, slug).lock
    if not path.exists():
        return False
    with path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def _read_pid_file(data_dir: Path, slug: str) -> dict:
    try:
        return json.loads(PlayoutFolder.of(data_dir, slug).pid.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def playout_pid(data_dir: Path, slug: str) -> int | None:
    pid = _read_pid_file(data_dir, slug).get("pid")
    return int(pid) if pid else None


def playout_status(data_dir: Path, slug: str, now: float | None = None) -> PlayoutStatus:
    now = time.time() if now is None else now
    running = playout_lock_is_held(data_dir, slug)
    state = read_state(data_dir, slug)
    process = _read_pid_file(data_dir, slug) if running else {}
    # A playout just started (waiting for its playlist, say) has not written a state yet: it
    # counts as fresh from its start.
    last_sign_of_life = max(state.updated_at if state else 0, process.get("started_at", 0))
    return PlayoutStatus(
        slug=slug,
        running=running,
        pid=process.get("pid"),
        seconds_since_update=(now - last_sign_of_life) if last_sign_of_life else None,
        stopped_by_operator=PlayoutFolder.of(data_dir, slug).stopped_marker.exists(),
    )
