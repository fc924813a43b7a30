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
        ("{cron: '0 20 * * *', timezone: Mars/Olympus}", "'Mars/Olympus' is not an IANA time zone"),
        ("{cron: '0 20 * * *', clips: 0}", "greater than or equal to 1"),
    ],
)
def test_a_bad_schedule_is_named(tmp_path, schedule, message):
    path = write(tmp_path, f"""
        channels:
          - {{slug: c, title: C, theme: t, style: s, schedule: {schedule}}}
        """)  # fmt: skip
    with pytest.raises(ChannelConfigError, match="channel 'c', field 'schedule") as error:
        load_channels(path)
    assert message in str(error.value)
