"""A channel's playout process (`webtv playout <channel>`): its lock, its pid, its status, and
the heartbeat by which a long-running process shows it is not hung.

A playout holds an exclusive lock on `playout.lock` in its folder for as long as it runs, so
whether a channel is up is a question for the kernel, not for a pid file that may be stale: a
process that dies, however it dies, drops its lock. The pid file beside it says whom to signal.
Whether it hangs is a question for its heartbeat, which the stack's watchdog reads (a hung
process, frozen or deadlocked, stops beating). Starting and stopping playouts is the stack's
(stack/playouts.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from webtv_dagster.playout.files import write_atomically
from webtv_dagster.playout.state import PlayoutFolder, read_state

log = logging.getLogger(__name__)

TAKE_OVER_SECONDS = 3.0  # a left playout asked to stop has this long before it is killed
HEARTBEAT_SECONDS = 0.5  # how often a process beats at most: what its watchdog allows for


class Heartbeat:
    """A process's sign of life, given from the loop that does its work (the playout's feeder,
    the chat bot's reader): a file whose time of change the stack's watchdog reads, and under
    systemd the service's watchdog notification (`WATCHDOG=1` on NOTIFY_SOCKET, after
    `READY=1` at the first beat). A process that hangs, frozen or deadlocked, stops beating."""

    def __init__(self, path: Path, notify_socket: str = ""):
        self.path = path
        self.notify_socket = notify_socket
        self._last = 0.0

    def beat(self) -> None:
        """Gives a sign of life (at most every HEARTBEAT_SECONDS: cheap to call often)."""
        now = time.monotonic()
        if now - self._last < HEARTBEAT_SECONDS:
            return
        first = self._last == 0.0
        self._last = now
        self.path.touch()
        if self.notify_socket:
            self._notify("READY=1\nWATCHDOG=1" if first else "WATCHDOG=1")

    def _notify(self, message: str) -> None:
        address = self.notify_socket
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(message.encode(), address)


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


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@contextmanager
def hold_playout_lock(data_dir: Path, slug: str, take_over: bool = False):
    """Held by the playout process while it runs; refuses a second playout of the channel.

    With `take_over` (a playout its supervisor starts), a playout that another parent runs (one
    a dead supervisor left running) is asked to stop (SIGTERM, SIGKILL after
    TAKE_OVER_SECONDS) and its lock taken as it goes: this one, started and ready meanwhile,
    resumes where it stopped, so that the air changes hands within a second."""
    folder = PlayoutFolder.of(data_dir, slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    with folder.lock.open("a") as lock:
        deadline = time.monotonic() + 2  # a status check holds the lock for a moment
        asked: dict[int, int] = {}  # the holder asked to stop: the signal sent
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = playout_pid(data_dir, slug)
                leftover = holder and _parent_of(holder) not in (None, os.getppid())
                if take_over and leftover and asked.get(holder) != signal.SIGKILL:
                    sig = signal.SIGKILL if holder in asked else signal.SIGTERM
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(holder, sig)
                    asked[holder] = sig
                    deadline = time.monotonic() + TAKE_OVER_SECONDS
                elif time.monotonic() > deadline:
                    raise PlayoutStartError(f"{slug} is already on air (pid {holder})") from None
                time.sleep(0.05)
        record = {"pid": os.getpid(), "started_at": time.time()}
        try:
            write_atomically(folder.pid, json.dumps(record).encode())
        except OSError as error:  # a full disk: the lock holds the channel all the same
            log.warning("%s: pid file not written (%s)", slug, error)
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


def restart_playout(data_dir: Path, slug: str) -> bool:
    """Asks the channel's running playout to stop (SIGTERM) for its supervisor to start it
    again, resuming where it stopped; False if none runs. The lock says it runs: a pid file
    a dead one left names nobody to signal."""
    pid = playout_pid(data_dir, slug)
    if pid is None or not playout_lock_is_held(data_dir, slug):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


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
