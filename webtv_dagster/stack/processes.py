"""Processes and sockets of this machine, as the stack starts and waits for them, and the
processes a stack left behind when its supervisor died."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# In the environment of every process of a stack (`webtv up` hands it to supervisord, whose
# programs and their children inherit it): the stack's data folder. It finds the processes a
# stack left running when its supervisor died, and names the stack that holds a port.
STACK_MARKER = "WEBTV_STACK"


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def unix_socket_is_served(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(str(path)) == 0


def wait_until_serving(socket_path: Path, timeout: float) -> bool:
    """Whether something accepts connections on the Unix socket within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unix_socket_is_served(socket_path):
            return True
        time.sleep(0.2)
    return False


def _marked(pid: int) -> str | None:
    """The data folder of the stack the process belongs to (its STACK_MARKER), or None."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return None
    prefix = f"{STACK_MARKER}=".encode()
    found = next((entry for entry in environment if entry.startswith(prefix)), None)
    return found[len(prefix) :].decode(errors="replace") if found else None


def stack_processes() -> Iterator[tuple[int, str]]:
    """Every process of a stack on this machine but this one: (pid, its stack's data folder)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            if (folder := _marked(int(entry.name))) is not None:
                yield int(entry.name), folder


def listening_on(ports: list[int]) -> set[int]:
    """The processes that hold a listening TCP socket on any of `ports`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) in ports:  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and any(
                os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()
            ):
                holders.add(int(entry.name))
    return holders


def stack_of(pid: int) -> str | None:
    """The stack of the process or of its nearest marked ancestor (nginx writes its title over
    its environment: its master's parent, supervisord, carries the marker while it lives)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        while pid > 1:
            if (folder := _marked(pid)) is not None:
                return folder
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def process_state(pid: int) -> str | None:
    """The process's state letter (R, S, T for stopped, Z for a zombie...), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """Whether the process exists and is not a zombie: one that exited and holds nothing (no
    port, no file) while it waits for its parent, or init for an orphan, to reap it. Some
    inits reap orphans a second or more late (seen here: an nginx worker whose master was
    killed)."""
    return process_state(pid) not in {None, "Z", "X"}


def end_processes(pids: list[int], sig: int, wait_seconds: float) -> None:
    """Sends `sig` to each process, then waits until they are gone (at most `wait_seconds`)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and any(is_running(pid) for pid in pids):
        time.sleep(0.05)


def end_leftovers(data_dir: Path, keep: Callable[[str], bool]) -> list[int]:
    """Ends the processes a stack of `data_dir` left running when its supervisor died (SIGTERM,
    then SIGKILL after 3 s), but those `keep` (of their command line) leaves to be taken over.
    Returns the pids ended."""
    ended = [
        pid
        for pid, folder in stack_processes()
        if folder == str(data_dir) and not keep(command_line(pid))
    ]
    end_processes(ended, signal.SIGTERM, wait_seconds=3)
    end_processes(ended, signal.SIGKILL, wait_seconds=2)
    return ended
