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
