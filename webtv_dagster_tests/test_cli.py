import pytest

from webtv_dagster.cli import main
from webtv_dagster.settings import Settings


def test_check_accepts_the_embedded_channels(capsys):
    assert main(["check"]) == 0
    assert "llama-jobs" in capsys.readouterr().out


def test_check_refuses_a_broken_file_with_its_reason(tmp_path):
    broken = tmp_path / "channels.yaml"
    broken.write_text("channels:\n  - slug: x\n    title: X\n    theme: t\n")
    with pytest.raises(SystemExit) as stop:
        main(["check", str(broken)])
    assert "channel 'x', field 'style': Field required" in str(stop.value.code)


def test_settings_come_from_the_environment(monkeypatch):
    assert Settings.from_env().s3_endpoint_url == "http://127.0.0.1:8333"
    monkeypatch.setenv("WEBTV_S3_BUCKET", "tv")
    monkeypatch.setenv("WEBTV_CLIPS_PER_RUN", "3")
    monkeypatch.setenv("WEBTV_EMBEDDED_S3", "0")
    monkeypatch.setenv("WEBTV_MIRRORS_TEST_LLAMAS", "rtmp://live.example/app/key-1")
    settings = Settings.from_env()
    assert (settings.s3_bucket, settings.clips_per_run, settings.embedded_s3) == ("tv", 3, False)
    assert settings.mirror_variable_value("test-llamas") == (
        "WEBTV_MIRRORS_TEST_LLAMAS",
        "rtmp://live.example/app/key-1",
    )
    assert "key-1" not in repr(settings)
    monkeypatch.setenv("WEBTV_CLIPS_PER_RUN", "0")
    monkeypatch.setenv("WEBTV_OPERATOR_TOKEN", "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    with pytest.raises(ValueError, match="WEBTV_CLIPS_PER_RUN.*got '0'"):
        Settings.from_env()


def test_channels_can_be_routed_through_local_spaces(tmp_path):
    from webtv_dagster.channels import load_channels
    from webtv_dagster.spaces.apps import channels_on_local_spaces

    models = {
        f"local-{family.replace('_', '-')}": {
            "kind": "gradio",
            "family": family,
            "spaces": ["http://127.0.0.1:7860"],
        }
        for family in ("text_to_video", "upscaler", "interpolator", "music")
    }
    settings = Settings(data_dir=tmp_path)
    routed = load_channels(
        channels_on_local_spaces(settings.channels_file, settings.data_dir, models)
    )
    for channel in routed.channels:
        assert channel.backends.text_to_video == "local-text-to-video"
        assert channel.backends.music == "local-music"
        assert channel.backends.prompt_writer == "rule-based"
    assert set(routed.models) == set(models)


def test_the_project_instance_config_is_valid():
    from pathlib import Path

    import dagster as dg
    import yaml

    from webtv_dagster.model_endpoints import OFFLINE_BACKENDS

    config = yaml.safe_load((Path(__file__).parents[1] / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=config) as instance:
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 2
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == 4
        # Clip runs take two of the slots at most; playout restarts never wait behind them.
        limits = queue.tag_concurrency_limits
        assert limits[0] == {"key": "webtv/stage", "value": "clips", "limit": 2}
        # And per remote model, whatever its name: the tags clip runs carry.
        per_model = {limit["key"]: limit for limit in limits[1:]}
        assert set(per_model) == {f"webtv/{family}_model" for family in OFFLINE_BACKENDS}
        assert all(limit["value"] == {"applyLimitPerUniqueValue": True} for limit in limits[1:])
        from webtv_dagster.defs.clip_production.assets import clip_job

        assert clip_job.tags["webtv/stage"] == "clips"


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["playout", "nosuch"], "no channel 'nosuch' in the channels file (known: test-llamas"),
        (["add-clips", "nosuch", "3"], "no channel 'nosuch'"),
        (["add-clips", "test-llamas", "0"], "count must be between 1 and 500, not 0"),
        (["add-clips", "test-llamas", "-3"], "count must be between 1 and 500, not -3"),
        (["add-clips", "test-llamas", "200000"], "count must be between 1 and 500, not 200000"),
        (["playout", "test-llamas", "--channels-file-is-broken"], "unrecognized arguments"),
        (["up", "--host", "0.0.0.0"], "it stays on loopback, not 0.0.0.0"),
        (["caddyfile", "Caddyfile", "--site", "tv.test"], "at least 12 characters"),
    ],
)
def test_user_mistakes_are_said_without_a_traceback(tmp_path, arguments, says):
    import os
    import subprocess
    import sys

    from .conftest import TEST_CHANNELS

    environment = {
        **os.environ,
        "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS),
        "WEBTV_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "Warning" not in done.stderr  # nothing buries the line that matters


def test_a_broken_channels_file_is_named_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    broken = tmp_path / "channels.yaml"
    broken.write_text("channels: [\n")
    environment = {**os.environ, "WEBTV_CHANNELS_FILE": str(broken)}
    done = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", "playout", "x"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"{broken}: not valid YAML" in done.stderr and "Traceback" not in done.stderr


def test_settings_out_of_bounds_are_named_by_their_variables():
    import os
    import subprocess
    import sys

    environment = {
        **os.environ,
        "WEBTV_CLIPS_PER_RUN": "0",
        "WEBTV_PLAYOUT_STALE_SECONDS": "inf",
        "WEBTV_OPERATOR_TOKEN": "hunter2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", "check"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    said = done.stderr
    assert "WEBTV_CLIPS_PER_RUN: Input should be greater than or equal to 1 (got '0')" in said
    assert "WEBTV_PLAYOUT_STALE_SECONDS: Input should be a finite number (got 'inf')" in said
    # A short operator token is refused at start, without repeating it.
    assert "WEBTV_OPERATOR_TOKEN: Value error, the operator token must have at least 16" in said
    assert "hunter2" not in said


PRESET_CHANNELS = """\
models:
  ltx-video: {kind: gradio, family: text_to_video, preset: ltx-video, spaces: [SPACE]}
channels:
  - slug: x
    title: X
    theme: llamas doing human jobs
    style: Pixar style
    backends: {text_to_video: ltx-video}
"""


def test_check_refuses_a_preset_served_here_without_its_extra(tmp_path, monkeypatch):
    from webtv_dagster.spaces import generators

    monkeypatch.setattr(generators, "models_extra_installed", lambda: False)
    local = tmp_path / "local.yaml"
    local.write_text(PRESET_CHANNELS.replace("SPACE", "http://127.0.0.1:7860"))
    with pytest.raises(SystemExit) as stop:
        main(["check", str(local)])
    assert "pip install 'webtv-dagster[models]'" in str(stop.value.code)
    # A preset served by another machine needs nothing here.
    remote = tmp_path / "remote.yaml"
    remote.write_text(PRESET_CHANNELS.replace("SPACE", "http://gpu-1.internal:7860"))
    assert main(["check", str(remote)]) == 0


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("preset: ltx-vidoe", "unknown preset 'ltx-vidoe' (known: ltx-video, ltx-upscaler"),
        ("preset: musicgen", "the preset 'musicgen' is a music model"),
    ],
)
def test_a_wrong_preset_is_refused_with_its_reason(tmp_path, entry, says):
    broken = tmp_path / "channels.yaml"
    broken.write_text(
        PRESET_CHANNELS.replace("preset: ltx-video", entry).replace("SPACE", "http://h:1")
    )
    with pytest.raises(SystemExit) as stop:
        main(["check", str(broken)])
    assert says in str(stop.value.code)


def test_a_playout_process_loads_none_of_the_heavy_libraries():
    """`webtv playout` (one per channel, always running) stays small: none of Dagster, boto3,
    numpy or the model clients is imported on its way to air (numpy alone is 11 MB resident;
    it once came in through the slate's module)."""
    import subprocess
    import sys

    heavy = ["dagster", "boto3", "numpy", "openai", "gradio_client", "cv2", "torch"]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, webtv_dagster.cli, webtv_dagster.playout.channel; "
            f"print([m for m in {heavy} if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]", f"the playout imports {loaded}"


def test_the_rtmp_program_starts_nginx_on_the_standard_library_alone():
    """supervisord's start of nginx after a crash or a hang's kill is time off air: its module
    imports nothing outside the standard library and the project (the `webtv` command's
    imports took 1.4-3.4 s on a loaded machine)."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; before = set(sys.modules); import webtv_dagster.stack.nginx_process; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} "
            "- set(sys.stdlib_module_names) - {'webtv_dagster'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]", f"nginx's start imports {loaded}"
