import pytest

from webtv_dagster.cli import main
from webtv_dagster.settings import Settings


def test_check_accepts_the_embedded_channels(capsys):
    assert main(["check"]) == 0
    assert "test-llamas" in capsys.readouterr().out


def test_check_refuses_a_broken_file_with_its_reason(tmp_path):
    broken = tmp_path / "channels.yaml"
    broken.write_text("channels:\n  - slug: x\n    title: X\n    theme: t\n")
    with pytest.raises(SystemExit) as stop:
        main(["check", str(broken)])
    assert "channel 'x', field 'style': Field required" in str(stop.value.code)


def test_settings_come_from_the_environment():
    settings = Settings.from_env({"WEBTV_S3_BUCKET": "tv", "WEBTV_CLIPS_PER_RUN": "3"})
    assert (settings.s3_bucket, settings.clips_per_run) == ("tv", 3)
    assert Settings.from_env({}).s3_endpoint_url == "http://127.0.0.1:8333"
    with pytest.raises(ValueError, match="clips_per_run"):
        Settings.from_env({"WEBTV_CLIPS_PER_RUN": "0"})
