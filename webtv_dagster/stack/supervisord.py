"""The stack's process supervisor: supervisord (PyPI `supervisor`), its configuration written
for this machine from a list of programs (stack/programs.py), and a client of its socket.

supervisord restarts a program within about a second of its death; one that dies again within
a second of starting is retried after 1, 2, 3... seconds, and given up (FATAL) after
START_RETRIES tries, which the off-air alert sensor reports (defs/alerts.py).

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

from webtv_dagster.stack.supervisor_logs import FACTORY as LOGS_SURVIVING_FULL_DISK

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
        "; Its logs survive a full disk (webtv_dagster/stack/supervisor_logs.py).",
        "[rpcinterface:webtv]",
        f"supervisor.rpcinterface_factory = {LOGS_SURVIVING_FULL_DISK}",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{folder / 'supervisor.sock'}",
        "",
    ]
    sections = [program.name.rpartition(":")[2] for program in programs]
    if clashes := sorted({name for name in sections if sections.count(name) > 1}):
        # supervisord would keep the last of each: a program configured would never run.
        raise ValueError(f"supervisord programs named twice: {clashes}")
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


def supervisord_binary() -> str:
    return str(Path(sys.executable).with_name("supervisord"))


def supervised_name(info: dict) -> str:
    """A program's supervisord name (group:program when grouped) from its process info."""
    return info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"


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

    def restart(self, name: str) -> None:
        """Stops the program (waiting for it) and starts it again."""
        self.stop(name)
        self.start(name)

    def stop_soon(self, name: str) -> None:
        """Asks the program to stop without waiting for it."""
        with contextlib.suppress(xmlrpc.client.Fault):
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

    def apply_configuration(self) -> list[str]:
        """Reads the configuration file again and applies it as `supervisorctl update` does:
        the groups (a program outside a group is a group of its own) that are new start, those
        gone stop, those changed start again; the others run on untouched. Returns the groups
        added, changed or removed."""
        [[added, changed, removed]] = self._rpc.supervisor.reloadConfig()
        for group in [*removed, *changed]:
            with contextlib.suppress(xmlrpc.client.Fault):  # not running
                self._rpc.supervisor.stopProcessGroup(group, True)
            self._rpc.supervisor.removeProcessGroup(group)
        for group in [*changed, *added]:
            self._rpc.supervisor.addProcessGroup(group)
        return sorted([*added, *changed, *removed])

    def stop_all_soon(self) -> None:
        self._rpc.supervisor.stopAllProcesses(False)

    def shutdown(self) -> None:
        self._rpc.supervisor.shutdown()
