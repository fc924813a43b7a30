"""Stopping the servers and encoders this project starts."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def unix_socket_is_served(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(str(path)) == 0


def _can_bind(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """A loopback port whose next `size` ports are all free too (for tests and benchmarks),
    below Linux's range for outgoing connections (32768 up), which could take it meanwhile."""
    for _ in range(200):
        base = random.randint(20_000, 32_000 - size)
        if all(_can_bind(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no block of free loopback ports found")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
