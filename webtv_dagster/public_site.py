"""The public site: what nginx serves from the data folder, named in one place. The playouts
write their state's public copy there, the viewer service listens on a socket there, and
nginx (stack/nginx.py) serves both, beside the HLS and the viewer page of its own root.

The folder must be reachable by nginx's workers, which drop root to an unprivileged account:
started as root with a private folder on the way (a checkout under /root), it is a folder of
its own in /var/tmp instead.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from pathlib import Path

PREVIEWS_PATH = "/previews/"  # proxied to the viewer service (audience/viewer_service.py)
RTMP_STATISTICS = "/rtmp/statistics"  # nginx-rtmp's clients per stream, to loopback only
WATCHING_PATH = "/watching.json"  # how many watch each channel (audience/watching.py)
# A count in watching.json older than this is not believed (its writer is gone).
WATCHING_FRESH_SECONDS = 30.0
WORKER_USER = "nobody"  # the account nginx's workers drop root to (stack/nginx.worker_account)


class PublicFolderError(RuntimeError):
    """The public folder cannot be made ours (someone else made it first)."""


def reachable_by_others(path: Path) -> bool:
    """Whether a user who owns nothing on the way can reach `path`: every existing folder on
    the way lets others through."""
    path = path.resolve()
    return all(folder.stat().st_mode & 0o001 for folder in [path, *path.parents] if folder.is_dir())


def public_folder(data_dir: Path) -> Path:
    """Where what nginx serves from the data folder lives: `nginx/` in it, or, when started as
    root with a private folder on the way to it (a checkout under /root), a folder of its own
    in /var/tmp that others can pass through, so that nginx's workers can drop root. `webtv up`
    puts nginx's whole root there."""
    data_dir = data_dir.resolve()
    if os.geteuid() != 0 or reachable_by_others(data_dir):
        return data_dir / "nginx"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"webtv-{digest}"


def make_public_folder(folder: Path) -> Path:
    """Creates `folder` (0755) or checks the one there is ours and writable by us only: in a
    shared /var/tmp, someone else could have made it first to plant files."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.geteuid():
        raise PublicFolderError(f"{folder} exists but is not a folder of this account: remove it")
    if info.st_mode & 0o022:
        folder.chmod(0o755)
    return folder


def share_with_nginx(socket_path: Path) -> None:
    """Lets nginx's workers, and no other account, connect to a socket of ours: shared with
    their group (WORKER_USER's, when we are root and they drop to it), else ours alone. Any
    account that could connect could send the viewer service its own X-Real-IP."""
    import grp
    import pwd

    group = None
    if os.geteuid() == 0:
        try:
            group = grp.getgrgid(pwd.getpwnam(WORKER_USER).pw_gid).gr_gid
        except KeyError:
            group = None  # no such account: the workers stay root
    if group is None:
        socket_path.chmod(0o600)
    else:
        os.chown(socket_path, -1, group)
        socket_path.chmod(0o660)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a server on a Unix socket (the viewer service's, the monitoring one), as nginx
    reaches them: for the watchdog's probes, the tests and the benchmarks."""

    def __init__(self, socket_path: Path, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def viewer_service_socket(data_dir: Path) -> Path:
    """Where the viewer service listens for what nginx proxies to it (previews, /api/, /xmltv/)."""
    return public_folder(data_dir) / "viewer-service.sock"


def monitoring_socket(data_dir: Path) -> Path:
    """Where the stack's watchdog answers /metrics, /healthz and /readyz for nginx."""
    return public_folder(data_dir) / "monitoring.sock"


def viewer_state_path(data_dir: Path, slug: str) -> Path:
    """The copy of a channel's playout state the viewer reads (/state/<slug>.json)."""
    return public_folder(data_dir) / "state" / f"{slug}.json"


def rtmp_statistics_url(http_port: int) -> str:
    """nginx-rtmp's statistics, as a process of this machine asks for them."""
    return f"http://127.0.0.1:{http_port}{RTMP_STATISTICS}"


def hls_fetch_socket(data_dir: Path) -> Path:
    """Where nginx logs each fetch of an HLS playlist (syslog datagrams) for the viewer
    service's count of who watches."""
    return public_folder(data_dir) / "hls-fetches.sock"


def watching_file(data_dir: Path) -> Path:
    """Who watches each channel (WATCHING_PATH), written by the viewer service."""
    return public_folder(data_dir) / "watching.json"


def read_watching(data_dir: Path, now: float) -> dict[str, dict[str, int]]:
    """Each channel's viewers, {slug: {"hls": n, "rtmp": n}}, as the viewer service last
    counted them; empty when it has not for WATCHING_FRESH_SECONDS (or never did)."""
    try:
        watching = json.loads(watching_file(data_dir).read_text())
        if now - watching["updated_at"] <= WATCHING_FRESH_SECONDS:
            return watching["channels"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}
