"""Starting, restarting and stopping a channel's playout process: through supervisord when the
stack's supervisord runs it, else as a process of its own session, so that it outlives the
`webtv channel start` or Dagster run that started it (`stop_playout` ends it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from webtv_dagster.playout.process import (
    PlayoutStartError,
    playout_lock_is_held,
    playout_pid,
    playout_status,
)
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.settings import child_environment
from webtv_dagster.stack.programs import playout_program, webtv_command
from webtv_dagster.stack.supervisord import StackSupervisor


def launch_playout(data_dir: Path, slug: str) -> subprocess.Popen:
    """Starts `webtv playout <slug>` in its own session, its output in the channel's
    playout.log; returns at once."""
    folder = PlayoutFolder.of(data_dir, slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.stopped_marker.unlink(missing_ok=True)
    with folder.playout_log.open("ab") as log:
        return subprocess.Popen(
            webtv_command("playout", slug),
            env=child_environment(WEBTV_DATA_DIR=str(data_dir.resolve())),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _supervised(data_dir: Path, slug: str) -> tuple[StackSupervisor, str] | None:
    """The stack's supervisord and the program name when it runs this channel's playout."""
    supervisor = StackSupervisor.connect(data_dir)
    name = playout_program(slug)
    if supervisor is None or supervisor.process(name) is None:
        return None
    return supervisor, name


PROGRESS_EVERY_SECONDS = 5.0


def _last_log_line(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "nothing yet"
    return lines[-1][-160:] if lines else "nothing yet"


def start_playout(
    data_dir: Path,
    slug: str,
    timeout: float = 120.0,
    settle_seconds: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Starts the channel's playout (through supervisord when the stack's supervisord runs it,
    else as a process of its own) and waits until it has queued its first clip and is still
    up `settle_seconds` later; returns its pid. While it waits, `progress` hears every few
    seconds how long and the playout's last log line. Raises PlayoutStartError with the end of
    its log if it exits."""
    started = time.time()
    folder = PlayoutFolder.of(data_dir, slug)
    folder.stopped_marker.unlink(missing_ok=True)
    supervised = _supervised(data_dir, slug)
    if supervised:
        supervisor, name = supervised
        supervisor.start(name)
        process = None
    else:
        process = launch_playout(data_dir, slug)
    log_path = folder.playout_log
    deadline = time.monotonic() + timeout
    on_air_since = None
    next_report = time.monotonic() + PROGRESS_EVERY_SECONDS
    while time.monotonic() < deadline:
        if progress is not None and time.monotonic() >= next_report:
            next_report += PROGRESS_EVERY_SECONDS
            progress(
                f"{slug}: waiting for the playout to go on air ({time.time() - started:.0f}"
                f" of {timeout:.0f} s); its log: {_last_log_line(log_path)}"
            )
        exited = process.poll() if process else _supervisor_exit(supervised)
        if exited is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-4:]
            raise PlayoutStartError(
                f"playout of {slug} exited with status {exited}: " + " | ".join(tail)
            )
        state = read_state(data_dir, slug)
        if on_air_since is None and state and state.updated_at >= started:
            on_air_since = time.monotonic()
        if on_air_since and time.monotonic() - on_air_since >= settle_seconds:
            if state.publisher_error:
                raise PlayoutStartError(
                    f"playout of {slug} runs but cannot publish: {state.publisher_error}; it "
                    "keeps trying (is the RTMP server up? `webtv status`)"
                )
            return playout_pid(data_dir, slug) or 0
        time.sleep(0.2)
    if process:
        process.kill()
    raise PlayoutStartError(
        f"playout of {slug} did not go on air in {timeout:.0f} s; see {log_path}"
    )


def stop_playout(data_dir: Path, slug: str, timeout: float = 30.0) -> bool:
    """Stops the channel's playout (SIGTERM, then SIGKILL after `timeout`); returns whether one
    was running. The marker it leaves keeps the watchdog from starting it again."""
    folder = PlayoutFolder.of(data_dir, slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.stopped_marker.touch()
    supervised = _supervised(data_dir, slug)
    if supervised:
        supervisor, name = supervised
        was_running = supervisor.process(name)["statename"] == "RUNNING"
        supervisor.stop(name)
        return was_running
    pid = playout_pid(data_dir, slug)
    if pid is None or not playout_lock_is_held(data_dir, slug):
        return False
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not playout_lock_is_held(data_dir, slug):
                return True
            time.sleep(0.1)
    return True


def _supervisor_exit(supervised: tuple[StackSupervisor, str]) -> int | None:
    """The exit status of a supervised playout that gave up starting (FATAL), or None."""
    supervisor, name = supervised
    info = supervisor.process(name) or {}
    return info.get("exitstatus") if info.get("statename") in {"FATAL", "STOPPED"} else None


def ensure_playout(
    data_dir: Path,
    slug: str,
    stale_after: float,
    restart: bool = False,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Makes sure the channel is on air: starts its playout if none runs, restarts one that
    stopped queueing clips (or any, with `restart`); `progress` hears how a start goes.
    Returns what it did: "running", "started" or "restarted"."""
    status = playout_status(data_dir, slug)
    if status.running and not restart and not status.needs_start(stale_after):
        return "running"
    action = "restarted" if status.running else "started"
    if status.running:
        stop_playout(data_dir, slug)
    start_playout(data_dir, slug, progress=progress)
    return action
