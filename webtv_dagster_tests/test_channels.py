import textwrap

import pytest

from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, ChannelConfigError, load_channels


def write(tmp_path, text):
    path = tmp_path / "channels.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_embedded_demo_channel_loads():
    channel = load_channels(DEFAULT_CHANNELS_FILE).channels[0]
    assert channel.slug == "llama-jobs"
    assert channel.clip_frames == 192


def test_clip_length_rounds_to_gapless_multiple(llama_channel):
    assert llama_channel.clip_frames == 64
    assert llama_channel.clip_seconds == pytest.approx(64 / 24)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ChannelConfigError, match="nope.yaml: channels file not found"):
        load_channels(tmp_path / "nope.yaml")


def test_broken_yaml_names_the_file(tmp_path):
    path = write(tmp_path, "channels: [\n  - slug: a\n")
    with pytest.raises(ChannelConfigError, match=r"channels.yaml: not valid YAML"):
        load_channels(path)


def test_bad_field_names_file_channel_and_field(tmp_path):
    path = write(
        tmp_path,
        """
        channels:
          - slug: good
            title: Good
            theme: t
            style: s
          - slug: broken
            title: Broken
            theme: t
            style: s
            clip_seconds: 5
            colour: red
        """,
    )
    with pytest.raises(ChannelConfigError) as error:
        load_channels(path)
    message = str(error.value)
    assert str(path) in message
    assert "channel 'broken', field 'clip_seconds'" in message
    assert "nearest lengths are 2.6667 and 5.3333" in message
    assert "channel 'broken', field 'colour'" in message
    assert "'good'" not in message


def test_missing_required_field_and_bad_slug(tmp_path):
    path = write(
        tmp_path,
        """
        channels:
          - slug: Not A Slug
            title: X
            style: s
        """,
    )
    with pytest.raises(ChannelConfigError) as error:
        load_channels(path)
    message = str(error.value)
    assert "channel 'Not A Slug', field 'slug'" in message
    assert "field 'theme': Field required" in message


def test_unknown_backend_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
        channels:
          - slug: one
            title: X
            theme: t
            style: s
            backends: {text_to_video: sora}
        """,
    )
    with pytest.raises(ChannelConfigError, match=r"channel 'one', field 'backends.text_to_video'"):
        load_channels(path)


def test_duplicate_slugs_are_refused(tmp_path):
    entry = "\n  - {slug: twin, title: X, theme: t, style: s}"
    path = write(tmp_path, "channels:" + entry * 2)
    with pytest.raises(ChannelConfigError, match="channel slug 'twin' is used twice"):
        load_channels(path)


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(ChannelConfigError, match="problem"):
        load_channels(write(tmp_path, ""))


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("{cron: 'every hour'}", "'every hour' is not a cron expression"),
        ("{cron: '0 0 * * * *'}", "'0 0 * * * *' is not a cron expression"),  # six fields
        ("{cron: '0 0 30 2 *'}", "'0 0 30 2 *' is not a cron expression"),  # 30 February
        ("{cron: '0 20 * * *', timezone: Mars/Olympus}", "'Mars/Olympus' is not an IANA time zone"),
        ("{cron: '0 20 * * *', clips: 0}", "greater than or equal to 1"),
    ],
)
def test_a_bad_schedule_is_named(tmp_path, schedule, message):
    path = write(
        tmp_path,
        f"""
        channels:
          - {{slug: c, title: C, theme: t, style: s, schedule: {schedule}}}
        """,
    )
    with pytest.raises(ChannelConfigError, match="channel 'c', field 'schedule") as error:
        load_channels(path)
    assert message in str(error.value)


def test_every_problem_is_named_at_once_through_the_cli(tmp_path):
    """Bad numbers (with the value given), an unknown backend in the same channel, and fixed
    words that would make every prompt break the rules: all in one `webtv check`."""
    import subprocess
    import sys
    from pathlib import Path

    path = write(
        tmp_path,
        """
        channels:
          - slug: llamas
            title: Llama Jobs
            theme: llamas doing human jobs
            style: IMAX Pixar style 3D animation
            recurring_details: [a fluffy llama wearing a shirt with text on it]
            clip_seconds: .nan
            ahead_seconds: 1e12
            backends: {text_to_video: nosuch}
          - slug: wordy
            title: Wordy
            theme: t
            style: %s
            retention: {keep_days: .inf, protect_recent: 99999999999}
        """
        % ("very " * 60 + "long style"),
    )
    webtv = Path(sys.executable).with_name("webtv")
    checked = subprocess.run([str(webtv), "check", str(path)], capture_output=True, text=True)
    assert checked.returncode != 0 and "Traceback" not in checked.stderr
    report = checked.stderr
    for expected in [
        "9 problem(s)",
        # The slug is a word models paint, and the theme is every offline prompt's subject.
        "channel 'llamas', field 'theme': 'llamas doing human jobs' contains 'llamas'",
        "channel 'llamas', field 'clip_seconds': Input should be a finite number (got nan)",
        "field 'ahead_seconds': Input should be less than or equal to 3600 (got '1e12')",
        "channel 'wordy', field 'retention.keep_days': Input should be a finite number (got inf)",
        "field 'retention.protect_recent': Input should be less than or equal to 10000",
        "channel 'llamas', field 'backends.text_to_video': no text_to_video backend 'nosuch'",
        "channel 'llamas', field 'style': 'IMAX Pixar style 3D animation' contains 'imax'",
        "field 'recurring_details': 'a fluffy llama wearing a shirt with text on it' contains "
        "'text'",
        "channel 'wordy', fields 'style' and 'recurring_details': their 62 words are in every "
        "prompt, leaving 13 of 75 for the shot",
    ]:
        assert expected in report, expected


def test_the_offline_writers_longest_prompt_must_fit(tmp_path):
    long_action = "very " * 50 + "slowly baking bread"
    path = write(
        tmp_path,
        f"""
        channels:
          - {{slug: long, title: Long, theme: t, style: s, actions: ["{long_action}"]}}
        """,
    )
    with pytest.raises(ChannelConfigError, match="the offline writer's longest prompt would have"):
        load_channels(path)


def test_a_theme_that_would_be_every_subject_obeys_the_rules_and_a_bad_model_is_named_once(
    tmp_path,
):
    path = write(
        tmp_path,
        """
        models:
          writer: {kind: openai, base_url: "http://127.0.0.1:1/v1", model: m, batch_size: 99}
        channels:
          - slug: coast
            title: Coast
            theme: drone footage of sunny coastlines
            style: watercolour
            backends: {prompt_writer: writer}
        """,
    )
    with pytest.raises(ChannelConfigError) as error:
        load_channels(path)
    report = str(error.value)
    assert "field 'models.writer.openai.batch_size'" in report
    assert "channel 'coast', field 'theme': 'drone footage of sunny coastlines' contains" in report
    assert "no prompt_writer backend" not in report  # the model is there, only invalid


def test_yaml_bombs_and_giant_files_are_refused_before_parsing(tmp_path):
    bomb = write(
        tmp_path,
        """
        a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
        channels: [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
        """,
    )
    with pytest.raises(ChannelConfigError, match=r"its aliases expand to \d{9} values"):
        load_channels(bomb)
    # Anchors and aliases within bounds are fine (yaml.safe_dump writes them for shared values).
    import yaml

    template = {"title": "Farm TV", "theme": "llamas at work", "style": "watercolour"}
    shared = {"channels": [template | {"slug": "first"}, template | {"slug": "second"}]}
    shared["channels"][1]["backends"] = shared["channels"][0]["backends"] = {"music": "procedural"}
    benign = tmp_path / "benign.yaml"
    benign.write_text(yaml.safe_dump(shared))
    assert "&id001" in benign.read_text()
    assert len(load_channels(benign).channels) == 2
    deep = tmp_path / "deep.yaml"
    deep.write_text("channels: " + "[" * 50_000 + "]" * 50_000)
    with pytest.raises(ChannelConfigError, match="nested too deep|problem"):
        load_channels(deep)
    giant = tmp_path / "giant.yaml"
    giant.write_text("channels: []\n" + "# padding\n" * 200_000)
    with pytest.raises(ChannelConfigError, match="a channels file has at most 1000000"):
        load_channels(giant)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"channels: \xff\xfe\n")
    with pytest.raises(ChannelConfigError, match="not UTF-8 text"):
        load_channels(binary)
