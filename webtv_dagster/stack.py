"""The embedded stack under one process supervisor: supervisord (PyPI `supervisor`), with a
configuration webtv writes for this machine.

Every long-running process is a supervised program: the embedded S3 (SeaweedFS), the RTMP/HLS
server (nginx) and the viewer service behind it, the Dagster code server, webserver and
daemon, and one playout per channel. supervisord restarts a program within about a second of
its death; one that dies again within a second of starting is retried after 1, 2, 3...
seconds, and given up (FATAL) after START_RETRIES tries, which the alert listener reports.
Programs start in priority order and stop in reverse, so the Dagster daemon stops first and the
S3 last.

Children get the environment of the `webtv up` that started supervisord (settings, S3 keys):
no secret is written into the configuration or shows on a command line.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.processes import unix_socket_is_served
from webtv_dagster.rtmp_server import nginx_command, viewer_service_socket

PLAYOUT_GROUP = "playouts"
CHAT_GROUP = "chat"
START_RETRIES = 20  # tries a program that keeps dying at start gets, 1 s more apart each time
LOG_BYTES = "10MB"  # per program log, three of them kept


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int  # lower starts first and stops last
    directory: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    stop_wait_seconds: int = 10
    log: Path | None = None  # default: <supervisor folder>/logs/<name>.log


def supervisor_folder(data_dir: Path) -> Path:
    return data_dir / "supervisor"


def webtv_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "webtv_dagster.cli", *arguments]


def dagster_programs(home: Path, host: str, port: int) -> list[Program]:
    """Dagster's code server, webserver and daemon, as three programs sharing the code server
    (a socket in DAGSTER_HOME, named by the workspace file written there)."""
    code_socket = home / "code-server.sock"
    (home / "workspace.yaml").write_text(
        "# Written by webtv: the webserver and daemon load code from the supervised server.\n"
        "load_from:\n"
        f"  - grpc_server: {{socket: {code_socket}, location_name: webtv}}\n"
    )
    bin_dir = Path(sys.executable).parent
    workspace = str(home / "workspace.yaml")
    environment = {"DAGSTER_HOME": str(home)}
    return [
        Program(
            "dagster-code-server",
            [
                str(bin_dir / "dagster"),
                "code-server",
                "start",
                "-m",
                "webtv_dagster.definitions",
                "--location-name",
                "webtv",
                "-s",
                str(code_socket),
            ],
            # Runs in flight are its children: by the time it stops, `stop_stack` has let
            # them finish or canceled them, and what is left goes with it.
            priority=30,
            directory=home,
            environment=environment,
            stop_wait_seconds=3,
        ),
        # Both wait for the code server's socket: a daemon up before it would fail the queued
        # runs it tries to launch.
        Program(
            "dagster-webserver",
            webtv_command(
                "when-serving",
                str(code_socket),
                "--",
                str(bin_dir / "dagster-webserver"),
                "-w",
                workspace,
                "-h",
                host,
                "-p",
                str(port),
            ),
            priority=50,
            directory=home,
            environment=environment,
        ),
        Program(
            "dagster-daemon",
            webtv_command(
                "when-serving",
                str(code_socket),
                "--",
                str(bin_dir / "dagster-daemon"),
                "run",
                "-w",
                workspace,
            ),
            priority=60,
            directory=home,
            environment=environment,
            stop_wait_seconds=30,
        ),
    ]


def media_programs(
    data_dir: Path,
    slugs: list[str],
    rtmp_root: Path,
    s3_command: list[str] | None,
    chat_slugs: list[str] = (),
) -> list[Program]:
    """The S3 (when embedded), the RTMP/HLS server, the viewer service behind it, one playout
    per channel and one chat bot per channel of `chat_slugs`."""
    programs = []
    if s3_command is not None:
        programs.append(
            Program("s3", s3_command, priority=10, directory=data_dir, stop_wait_seconds=5)
        )
    nginx_command(rtmp_root)  # nginx and its RTMP module are there, or say so now
    programs.append(
        Program(
            "rtmp",
            webtv_command("rtmp-server", str(rtmp_root)),
            priority=20,
            log=rtmp_root / "nginx.out",
        )
    )
    socket_path = viewer_service_socket(data_dir)
    service = webtv_command("viewer-service", "--socket", str(socket_path))
    programs.append(Program("viewer-service", service, priority=20))
    for slug in slugs:
        programs.append(
            Program(
                f"{PLAYOUT_GROUP}:{slug}",
                webtv_command("playout", slug),
                priority=40,
                stop_wait_seconds=5,
                log=PlayoutFolder.of(data_dir, slug).playout_log,
            )
        )
    for slug in chat_slugs:
        programs.append(
            Program(
                f"{CHAT_GROUP}:{slug}",
                webtv_command("chat-bot", slug),
                priority=50,
                stop_wait_seconds=5,
            )
        )
    return programs


def _quote(value: str) -> str:
    return '"' + value.replace("%", "%%").replace('"', '\\"') + '"'


def supervisord_conf(folder: Path, programs: list[Program]) -> str:
    logs = folder / "logs"
    lines = [
        "; Written by webtv up: the processes of the embedded stack.",
        "[unix_http_server]",
        f"file={folder / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        "nodaemon=true",
        "silent=true",
        f"logfile={folder / 'supervisord.log'}",
        f"logfile_maxbytes={LOG_BYTES}",
        "logfile_backups=3",
        f"pidfile={folder / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{folder / 'supervisor.sock'}",
        "",
    ]
    groups: dict[str, list[str]] = {}
    for program in programs:
        group, _, name = program.name.rpartition(":")
        if group:
            groups.setdefault(group, []).append(name)
        log = program.log or logs / f"{name}.log"
        lines += [
            f"[program:{name}]",
            f"command={shlex.join(program.command).replace('%', '%%')}",
            f"priority={program.priority}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            f"startretries={START_RETRIES}",
            f"stopwaitsecs={program.stop_wait_seconds}",
            # Children (FFmpeg under a playout, nginx workers) go with their program.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log}",
            f"stdout_logfile_maxbytes={LOG_BYTES}",
            "stdout_logfile_backups=3",
        ]
        if program.directory is not None:
            lines.append(f"directory={program.directory}")
        if program.environment:
            pairs = ",".join(f"{key}={_quote(value)}" for key, value in program.environment.items())
            lines.append(f"environment={pairs}")
        lines.append("")
    for group, names in groups.items():
        priority = min(p.priority for p in programs if p.name.startswith(f"{group}:"))
        # One group: supervisord stops a group's programs all at once, not one by one.
        lines += [f"[group:{group}]", f"programs={','.join(names)}", f"priority={priority}", ""]
    return "\n".join(lines)


def write_supervisord_conf(data_dir: Path, programs: list[Program]) -> Path:
    folder = supervisor_folder(data_dir).resolve()
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    for program in programs:
        if program.log is not None:
            program.log.parent.mkdir(parents=True, exist_ok=True)
    path = folder / "supervisord.conf"
    path.write_text(supervisord_conf(folder, programs))
    path.chmod(0o600)
    return path


def wait_until_serving(socket_path: Path, timeout: float) -> bool:
    """Whether something accepts connections on the Unix socket within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if unix_socket_is_served(socket_path):
            return True
        time.sleep(0.2)
    return False


def supervisord_binary() -> str:
    return str(Path(sys.executable).with_name("supervisord"))


class StackSupervisor:
    """A client of the stack's supervisord, over its Unix socket (owner only)."""

    def __init__(self, data_dir: Path):
        self.socket_path = supervisor_folder(data_dir).resolve() / "supervisor.sock"
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        self._rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    @classmethod
    def connect(cls, data_dir: Path) -> StackSupervisor | None:
        """The running supervisord of this data folder, or None."""
        supervisor = cls(data_dir)
        if not supervisor.socket_path.exists():
            return None
        try:
            supervisor._rpc.supervisor.getState()
        except (OSError, xmlrpc.client.Error):
            return None
        return supervisor

    def processes(self) -> list[dict]:
        return self._rpc.supervisor.getAllProcessInfo()

    def process(self, name: str) -> dict | None:
        with contextlib.suppress(xmlrpc.client.Fault):
            return self._rpc.supervisor.getProcessInfo(name)
        return None

    def start(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED
            self._rpc.supervisor.startProcess(name, True)

    def stop(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING
            self._rpc.supervisor.stopProcess(name, True)

    def stop_soon(self, name: str) -> None:
        """Asks the program (or group, as `name:*`) to stop without waiting for it."""
        with contextlib.suppress(xmlrpc.client.Fault):
            if name.endswith(":*"):
                self._rpc.supervisor.stopProcessGroup(name[:-2], False)
            else:
                self._rpc.supervisor.stopProcess(name, False)

    def wait_stopped(self, name: str, timeout: float) -> bool:
        """Waits until the program is no longer running or stopping; returns whether it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.process(name)
            if info is None or info["statename"] not in {"RUNNING", "STARTING", "STOPPING"}:
                return True
            time.sleep(0.1)
        return False

    def stop_all_soon(self) -> None:
        self._rpc.supervisor.stopAllProcesses(False)

    def shutdown(self) -> None:
        self._rpc.supervisor.shutdown()
