"""systemd units for a production host, rendered from the templates in systemd/ with this
installation's paths: the RTMP/HLS server and the viewer service behind it, one playout per
channel (a template unit), the Dagster code server, webserver and daemon, an alert unit that
systemd starts when another gives up (OnFailure=), and webtv.target that groups them.

systemd restarts each unit a second after it dies and, past 20 failures in two minutes, gives
up and starts the alert unit. Settings and secrets come from one environment file (mode 0600),
never from a command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from webtv_dagster.stack.instance import write_instance_yaml

TEMPLATES = Path(__file__).with_name("systemd")


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
