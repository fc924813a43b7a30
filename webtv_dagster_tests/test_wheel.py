"""The project as a user installs it: a wheel built from the sources, installed without `-e` in
a fresh virtualenv, runs the whole stack from its own package data (instance settings,
channels, viewer, hls.js, systemd templates)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from webtv_dagster_tests.servers import free_port_block

from .conftest import command_lines, wait_for

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".venv", "data", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache"
)


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except OSError:
        return 0


def test_a_wheel_installed_in_a_fresh_virtualenv_runs_the_stack(tmp_path):
    sources = tmp_path / "src"
    shutil.copytree(ROOT, sources, symlinks=True, ignore=IGNORED)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(sources),
        ],
        check=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("webtv_dagster-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900
    )
    webtv = str(venv / "bin" / "webtv")
    s3, rtmp, ui = free_port_block(10), free_port_block(2), free_port_block(1)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WEBTV_", "DAGSTER_", "PYTHON", "AWS_"))
    }
    environment |= {
        "WEBTV_DATA_DIR": str(tmp_path / "data"),
        "WEBTV_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3}",
        "WEBTV_RTMP_PORT": str(rtmp),
        "WEBTV_HLS_PORT": str(rtmp + 1),
    }
    run = tmp_path / "run"  # not the checkout: nothing can be imported from there
    run.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import webtv_dagster; print(webtv_dagster.__file__)"],
        cwd=run,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv))
    assert subprocess.run([webtv, "check"], cwd=run, env=environment).returncode == 0
    up = subprocess.Popen(
        [webtv, "up", "--port", str(ui)],
        cwd=run,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        viewer = f"http://127.0.0.1:{rtmp + 1}"
        wait_for(lambda: status_of(f"{viewer}/") == 200, 120, "the viewer")
        assert status_of(f"{viewer}/vendor/hls.min.js") == 200
        wait_for(lambda: status_of(f"http://127.0.0.1:{ui}/server_info") == 200, 120, "the UI")

        def on_air() -> bool:
            status = subprocess.run(
                [webtv, "status"], cwd=run, env=environment, capture_output=True, text=True
            )
            return "on air" in status.stdout

        wait_for(on_air, 120, "the demo channel on air")
        # The demo channel takes requests: moderated with the built-in word list (package data).
        asked = {"refused": "a naked llama baking bread", "queued": "the llama baking bread"}
        for want, idea in asked.items():
            request = urllib.request.Request(
                f"{viewer}/api/llama-jobs/requests",
                json.dumps({"idea": idea}).encode(),
                {"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    said = json.loads(answer.read())
            except urllib.error.HTTPError as error:
                said = json.loads(error.read())
            assert ("naked" in said["message"]) == (want == "refused"), said
    finally:
        subprocess.run([webtv, "down"], cwd=run, env=environment, timeout=120)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
    time.sleep(1)
    assert str(tmp_path) not in command_lines()  # every process of the stack is gone
