"""The programs of the stack `webtv up` runs under supervisord: the embedded S3, the RTMP/HLS
server and the viewer service behind it, one playout and (where configured) one chat bot per
channel, and the Dagster code server, webserver and daemon. A new long-running process of the
stack is a Program here.

Programs start in priority order and stop in reverse, so the Dagster daemon stops first and the
S3 last. Each program's command line names no secret: children read their settings from the
environment `webtv up` gives supervisord (settings.child_environment).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.public_site import viewer_service_socket
from webtv_dagster.stack import nginx_process
from webtv_dagster.stack.nginx_process import nginx_command
from webtv_dagster.stack.supervisord import Program

# Dagster's processes (their start wrappers too) and the runs they start (clip production: the
# heavy work) give way to the air path on a busy machine: at a stack's start (every process
# importing at once) and while clips are made, a playout never waits for a core.
NICE = [shutil.which("nice") or "/usr/bin/nice", "-n", "10"]
# A channel's playout and chat bot are programs of their own (each its own supervisord group),
# so that `webtv reload` adds, changes or removes one channel's without touching another's:
# supervisord updates whole groups. Their names, which no channel slug (no "_") nor fixed
# program (s3, rtmp...) can take:
PLAYOUT_PREFIX = "playout_"
CHAT_PREFIX = "chat_"


def playout_program(slug: str) -> str:
    """The supervisord name of a channel's playout."""
    return f"{PLAYOUT_PREFIX}{slug}"


def chat_program(slug: str) -> str:
    """The supervisord name of a channel's chat bot."""
    return f"{CHAT_PREFIX}{slug}"


def playout_channel(program: str) -> str | None:
    """The channel whose playout the program is (None: another program)."""
    return program.removeprefix(PLAYOUT_PREFIX) if program.startswith(PLAYOUT_PREFIX) else None


def chat_channel(program: str) -> str | None:
    """The channel whose chat bot the program is (None: another program)."""
    return program.removeprefix(CHAT_PREFIX) if program.startswith(CHAT_PREFIX) else None


def watchdog_program(ui_host: str, ui_port: int) -> Program:
    """The watchdog that kills hung programs for supervisord to restart (stack/watchdog.py):
    it starts last and stops first, so that nothing being stopped looks hung to it."""
    return Program(
        "watchdog",
        webtv_command("watchdog", "--ui", f"{ui_host}:{ui_port}"),
        priority=70,
        stop_wait_seconds=2,
    )


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
                *NICE,
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
            [
                *NICE,
                *webtv_command(
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
            ],
            priority=50,
            directory=home,
            environment=environment,
        ),
        Program(
            "dagster-daemon",
            [
                *NICE,
                *webtv_command(
                    "when-serving",
                    str(code_socket),
                    "--",
                    str(bin_dir / "dagster-daemon"),
                    "run",
                    "-w",
                    workspace,
                ),
            ],
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
            # Not `webtv rtmp-server`: its start is time off air (nginx_process.py).
            [sys.executable, "-m", nginx_process.__name__, str(rtmp_root)],
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
                playout_program(slug),
                webtv_command("playout", slug),
                priority=40,
                stop_wait_seconds=5,
                log=PlayoutFolder.of(data_dir, slug).playout_log,
            )
        )
    for slug in chat_slugs:
        programs.append(
            Program(
                chat_program(slug),
                webtv_command("chat-bot", slug),
                priority=50,
                stop_wait_seconds=5,
            )
        )
    return programs
