"""systemd units for a production host, rendered from the templates in systemd/ with this
installation's paths: the RTMP/HLS server and the viewer service behind it, one playout per
channel (a template unit), the Dagster code server, webserver and daemon, an alert unit that
systemd starts when another gives up (OnFailure=), and webtv.target that groups them.

systemd restarts each unit a second after it dies and, past 20 failures in two minutes, gives
up and starts the alert unit. Settings and secrets come from one environment file (mode 0600),
never from a command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from webtv_dagster.stack.instance import write_instance_yaml

TEMPLATES = Path(__file__).with_name("systemd")
UNITS = "webtv-*"  # every unit of the stack, templates' instances included
# A unit's systemd states as the supervisord state names the metrics use (stack/metrics.py).
SUPERVISOR_STATE = {
    "active": "RUNNING",
    "reloading": "RUNNING",
    "activating": "STARTING",  # its ExecStart, or waiting to be restarted (auto-restart)
    "deactivating": "STOPPING",
    "failed": "FATAL",  # systemd gave up (StartLimitBurst) or it failed to start
    "inactive": "STOPPED",
}


def render_units(
    output: Path,
    data_dir: Path,
    env_file: Path,
    user: str,
    ui_port: int = 3000,
    code_server_port: int = 4266,
    postgres: bool = False,
) -> list[Path]:
    """Writes the units into `output` and the Dagster instance and workspace files (with
    PostgreSQL storage, `postgres`) into `data_dir`/dagster; returns the units written."""
    data_dir = data_dir.resolve()
    home = data_dir / "dagster"
    write_instance_yaml(home, postgres=postgres)
    (home / "workspace.yaml").write_text(
        "# Written by webtv systemd-units: the code server of webtv-dagster-code-server.service.\n"
        "load_from:\n"
        f"  - grpc_server: {{host: 127.0.0.1, port: {code_server_port}, location_name: webtv}}\n"
    )
    values = {
        "bin": str(Path(sys.executable).parent),
        "data_dir": str(data_dir),
        "dagster_home": str(home),
        "env_file": str(env_file),
        "user": user,
        "ui_port": ui_port,
        "code_server_port": code_server_port,
    }
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for template in sorted(TEMPLATES.iterdir()):
        unit = output / template.name
        unit.write_text(template.read_text().format(**values))
        written.append(unit)
    return written


def units_of_show(output: str) -> list[dict]:
    """The units of `systemctl show -p Id,ActiveState,SubState,MainPID,NRestarts` (blocks of
    key=value lines, one block a unit) as supervisord reports processes: name (the unit, less
    `.service`), statename, pid, restarts."""
    units = []
    for block in output.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if not fields.get("Id", "").endswith(".service"):
            continue
        name = fields["Id"].removesuffix(".service")
        state = SUPERVISOR_STATE.get(fields.get("ActiveState", ""), "STOPPED")
        if state == "STARTING" and fields.get("SubState") == "auto-restart":
            state = "BACKOFF"  # dead, to be started again
        units.append(
            {
                "name": name,
                "group": name,
                "statename": state,
                "pid": int(fields.get("MainPID") or 0),
                "restarts": int(fields.get("NRestarts") or 0),
            }
        )
    return units


def systemd_units() -> list[dict]:
    """This host's webtv units as systemd knows them now (units_of_show); none when systemd
    does not answer."""
    try:
        shown = subprocess.run(
            [
                "systemctl",
                "show",
                "--all",
                "-p",
                "Id,ActiveState,SubState,MainPID,NRestarts",
                UNITS,
            ],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return units_of_show(shown.stdout) if shown.returncode == 0 else []
