"""nginx as a process: its command line, its processes, and the start that becomes it
(`python -m webtv_dagster.stack.nginx_process ROOT`, the rtmp program of `webtv up`). Standard
library only: supervisord runs this after a crash or a hang's kill, and every second of its
start is time off air (the `webtv` command's imports took 1 to 2 s on a loaded 2-core machine,
nginx itself 0.05 s; benchmarks in docs/benchmarks.md#fault-soak)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from webtv_dagster.stack.processes import end_processes, is_running

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


class RtmpServerError(RuntimeError):
    """nginx or its RTMP module is missing, the server did not come up, or its configuration
    is wrong."""


def become_nginx(root: Path) -> None:
    """Ends the nginx of `root` a killed predecessor or a dead supervisor left running (at the
    last moment: it served until now), then becomes nginx on the configuration under `root`
    (same pid, so supervisord or systemd signals nginx itself)."""
    command = nginx_command(root)
    if left := nginx_of(root):
        end_processes(left, signal.SIGKILL, wait_seconds=2)  # gone, its ports free
        print(f"webtv: ended nginx processes {left} left running on {root}", flush=True)
    os.execv(command[0], command)


def nginx_command(root: Path) -> list[str]:
    """nginx in the foreground on the configuration written under `root`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not RTMP_MODULE.exists():
        raise RtmpServerError(
            "nginx with the RTMP module is missing: apt-get install nginx libnginx-mod-rtmp"
        )
    root = root.resolve()
    return [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]


def nginx_of(root: Path) -> list[int]:
    """The nginx processes of `root` (an nginx writes its title over its environment: they are
    found as `nginx` processes in the process group of the master its pid file names): what a
    killed master left behind, or an nginx a dead supervisor left running."""
    try:
        master = int((root / "nginx.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            process_group = int(fields[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        if name == "nginx" and process_group == master and is_running(pid):
            found.append(pid)
    return found


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m webtv_dagster.stack.nginx_process ROOT (written by webtv up)")
    try:
        become_nginx(Path(sys.argv[1]))
    except RtmpServerError as error:
        sys.exit(f"webtv: {error}")
