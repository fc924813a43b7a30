"""The systemd units for a production host pass `systemd-analyze verify` with this
installation's paths, and restart what dies."""

import configparser
import shutil
import subprocess

import pytest

from webtv_dagster.stack.systemd_units import render_units


def test_the_units_verify_and_restart_every_service(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is required (Debian: apt-get install systemd; scripts/test)")
    env_file = tmp_path / "webtv.env"
    env_file.write_text("WEBTV_S3_ENDPOINT_URL=http://127.0.0.1:9000\n")
    units = render_units(tmp_path / "units", tmp_path / "data", env_file, "root")
    instances = []
    for template in ("webtv-playout@", "webtv-chat@"):
        instances.append(tmp_path / "units" / f"{template}llama-jobs.service")
        shutil.copy(tmp_path / "units" / f"{template}.service", instances[-1])
    checked = [u for u in units if "@" not in u.name] + instances
    result = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, checked)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    for unit in checked:
        if unit.suffix != ".service":
            continue
        parsed = configparser.ConfigParser(interpolation=None, strict=False)
        parsed.read(unit)
        assert parsed["Service"]["Restart"] == "always", unit.name
        assert parsed["Service"]["RestartSec"] == "1", unit.name
        assert parsed["Unit"]["OnFailure"] == "webtv-alert@%n.service", unit.name
        assert parsed["Service"]["EnvironmentFile"] == str(env_file), unit.name
        # Every program finds the data folder, whatever its working folder.
        data_dir = (tmp_path / "data").resolve()
        assert f"\nEnvironment=WEBTV_DATA_DIR={data_dir}\n" in unit.read_text(), unit.name
    workspace = (tmp_path / "data" / "dagster" / "workspace.yaml").read_text()
    assert "port: 4266" in workspace


# What `systemctl show -p Id,ActiveState,SubState,MainPID,NRestarts 'webtv-*'` prints (systemd
# 252): a block a unit, the target among them.
SHOWN = """Id=webtv-rtmp.service
ActiveState=active
SubState=running
MainPID=812
NRestarts=2

Id=webtv-playout@llama-jobs.service
ActiveState=activating
SubState=auto-restart
MainPID=0
NRestarts=7

Id=webtv-dagster-daemon.service
ActiveState=failed
SubState=failed
MainPID=0
NRestarts=20

Id=webtv.target
ActiveState=active
SubState=active
MainPID=
NRestarts=
"""


def test_systemd_states_read_as_the_metrics_name_them():
    from webtv_dagster.stack.systemd_units import units_of_show

    assert units_of_show(SHOWN) == [
        {
            "name": "webtv-rtmp",
            "group": "webtv-rtmp",
            "statename": "RUNNING",
            "pid": 812,
            "restarts": 2,
        },
        {
            "name": "webtv-playout@llama-jobs",
            "group": "webtv-playout@llama-jobs",
            "statename": "BACKOFF",
            "pid": 0,
            "restarts": 7,
        },
        {
            "name": "webtv-dagster-daemon",
            "group": "webtv-dagster-daemon",
            "statename": "FATAL",
            "pid": 0,
            "restarts": 20,
        },
    ]
    assert units_of_show("") == []
