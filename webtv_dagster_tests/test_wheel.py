"""The project as a user installs it: a wheel built from the sources, installed without `-e` and
without extras in a fresh virtualenv, within constraints.txt (the versions CI ran), runs the
whole stack from its own package data (instance settings, channels, viewer, hls.js, systemd
templates); what needs an extra says which. And the packaging is honest: every third-party
module the package imports is declared, every floor admits the version tested."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from webtv_dagster.media_store import MediaStore
from webtv_dagster.storage import StorageError
from webtv_dagster_tests.servers import free_port_block

from .conftest import command_lines, wait_for

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".venv", "data", ".git", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache"
)
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Libraries only an extra brings (gradio and what it pulls in, the model code, the test tools).
EXTRAS_ONLY = ["gradio", "pandas", "torch", "diffusers", "pytest", "dagster_dg_cli"]


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
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    install = [*pip, "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)]
    subprocess.run(install, check=True, timeout=900)
    subprocess.run([*pip, "check"], check=True, timeout=120)
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
    find = f"import importlib.util as u; print([m for m in {EXTRAS_ONLY} if u.find_spec(m)])"
    present = subprocess.run(
        [str(venv / "bin" / "python"), "-c", find], cwd=run, capture_output=True, text=True
    )
    assert present.stdout.strip() == "[]", f"a plain install carries extras: {present.stdout}"
    spaces = subprocess.run([webtv, "spaces"], cwd=run, env=environment, capture_output=True)
    assert spaces.returncode != 0
    assert b"pip install 'webtv-dagster[spaces]'" in spaces.stderr, spaces.stderr
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
        # No keys configured: the embedded S3 got keys of its own, readable by us alone; the
        # keys every install once shared open nothing.
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700  # made by webtv up
        keys_file = tmp_path / "data" / "s3-keys.json"
        assert keys_file.stat().st_mode & 0o777 == 0o600
        keys = json.loads(keys_file.read_text())
        assert keys["aws_secret_access_key"] != "webtv-embedded-secret"
        endpoint = environment["WEBTV_S3_ENDPOINT_URL"]
        own = MediaStore("media", endpoint, "us-east-1", *keys.values())
        own.put_json("keys-test.json", {"written": "with the install's keys"})
        shared = MediaStore("media", endpoint, "us-east-1", "webtv", "webtv-embedded-secret")
        with pytest.raises(StorageError):
            shared.get_json("keys-test.json")
        with pytest.raises(StorageError):
            shared.put_json("keys-test.json", {"written": "by another account"})
        assert own.get_json("keys-test.json") == {"written": "with the install's keys"}
    finally:
        subprocess.run([webtv, "down"], cwd=run, env=environment, timeout=120)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
    time.sleep(1)
    assert str(tmp_path) not in command_lines()  # every process of the stack is gone


def distribution(requirement: str) -> str:
    """The canonical distribution name of a requirement ("jaraco.stream>=3" -> jaraco-stream)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group()
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, set[str]]:
    """Each top-level module the package imports from outside the standard library, with the
    files that import it."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "webtv_dagster").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top != "webtv_dagster":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared = {distribution(r) for r in PROJECT["dependencies"]}
    declared |= {
        distribution(r) for extra in PROJECT["optional-dependencies"].values() for r in extra
    }
    providers = packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not {distribution(d) for d in providers.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_dependency_is_within_the_tested_constraints():
    """Each requirement with a floor admits the version constraints.txt holds (the one CI ran):
    a floor above it was never tested, and the constraints would make pip refuse."""
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[distribution(name)] = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    requirements = [*PROJECT["dependencies"]]
    requirements += [r for extra in PROJECT["optional-dependencies"].values() for r in extra]
    for requirement in requirements:
        name = distribution(requirement)
        if name == "webtv-dagster":  # an extra that includes another
            continue
        assert name in pinned, f"{requirement}: not in constraints.txt"
        for floor in re.findall(r"(?:>=|==)\s*([\d.]+)", requirement):
            wanted = tuple(int(p) for p in floor.split(".")[:3])
            assert pinned[name][: len(wanted)] >= wanted, f"{requirement}: tested {pinned[name]}"
