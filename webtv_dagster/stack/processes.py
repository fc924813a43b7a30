"""Processes and sockets of this machine, as the stack starts and waits for them."""

from __future__ import annotations

import socket
import time
from pathlib import Path


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
