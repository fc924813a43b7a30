"""What a model writes passes the same word list as viewers' ideas before its clip is made: a
refused prompt is replaced from the answer's spares or written again, recorded with its reason;
a writer that keeps writing refused text fails the stage, naming it."""

import json

import dagster as dg
import pytest

from webtv_dagster import clips
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.clip_production.assets import shot_prompt

from .conftest import clip_resources, latest_metadata
from .fake_llm import FakeLLM
from .test_llm_prompt_writer import good_prompt, writer_channels_file

CLEAN = [good_prompt(action) for action in ("tuning a piano", "delivering letters")]
# Blocked words in disguise: digits for letters, letters spelled out with spaces or dots.
DISGUISED = [
    good_prompt(action)
    for action in ("painting a mural in bl00d red", "juggling b l o o d oranges", "reading G.O.R.E")
]


@pytest.fixture
def llm():
    server = FakeLLM(json.dumps({"prompts": DISGUISED}))
    yield server
    server.close()


def write(instance, seaweedfs, media_store, path, key):
    instance.add_dynamic_partitions("clips", [key])
    return dg.materialize(
        [shot_prompt],
        partition_key=key,
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, path),
        raise_on_error=False,
    )


def test_a_refused_prompt_is_replaced_by_the_answers_next_and_recorded(
    llm, instance, seaweedfs, media_store, tmp_path
):
    llm.answer(json.dumps({"prompts": [DISGUISED[0], *CLEAN]}))
    key = "test-remote-000001"
    assert write(instance, seaweedfs, media_store, writer_channels_file(tmp_path, llm), key).success
    record = media_store.get_json(ClipId.parse(key).object_key(clips.PROMPT))
    assert (record["prompt"], record["spares"]) == (CLEAN[0], CLEAN[1:])
    assert record["refused"] == [
        {
            "prompt": DISGUISED[0],
            "reason": "it contains 'blood', which this channel does not show",
            "by": "word list",
        }
    ]
    metadata = latest_metadata(instance, shot_prompt, key)
    assert metadata["refused_prompts"] == 1 and "blood" in metadata["refused_because"]
    assert len(llm.requests) == 1


def test_a_writer_that_keeps_writing_refused_text_fails_the_stage_naming_it(
    llm, instance, seaweedfs, media_store, tmp_path
):
    key = "test-remote-000001"
    result = write(instance, seaweedfs, media_store, writer_channels_file(tmp_path, llm), key)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "wrote only text this channel does not show, 9 prompt(s) in 3 answers" in message
    assert "'gore'" in message and "'blood'" in message
    # Three answers per try of the stage (its retry policy tries again): one request each, as
    # every prompt passed the prompt rules.
    assert len(llm.requests) % 3 == 0 and llm.requests
    # Nothing refused is recorded as the clip's prompt.
    with pytest.raises(FileNotFoundError):
        media_store.get_json(ClipId.parse(key).object_key(clips.PROMPT))


def test_a_channels_title_passes_the_word_list_and_its_judge(
    llm, instance, seaweedfs, media_store, tmp_path
):
    """The title is shown on the ident, the bug, the page and the guide: `webtv check` (and
    `webtv up`) refuse one the word list catches, disguised or not; the ident asset asks the
    channel's judge too and makes nothing of a refused title."""
    from webtv_dagster.cli import main
    from webtv_dagster.defs.air.ident import channel_ident

    channels = tmp_path / "channels.yaml"
    channels.write_text(
        "models:\n"
        f'  judge: {{kind: openai, base_url: "{llm.base_url}", model: fake}}\n'
        "channels:\n"
        "  - {slug: test-title, title: TITLE, theme: llamas doing human jobs,\n"
        "     style: Pixar style 3D animation, requests: {judge: judge}}\n"
    )
    template = channels.read_text()
    channels.write_text(template.replace("TITLE", "'Llama B.L.0.O.D Bakery'"))
    with pytest.raises(SystemExit) as stop:
        main(["check", str(channels)])
    assert str(stop.value.code) == (
        "webtv: the title of channel test-title, 'Llama B.L.0.O.D Bakery', was refused by the "
        "word list: it contains 'blood', which this channel does not show (change `title` in "
        "the channels file)"
    )
    channels.write_text(template.replace("TITLE", "Llama Bakery"))
    assert main(["check", str(channels)]) == 0
    llm.answer(json.dumps({"allowed": False, "reason": "mocks a real bakery"}))
    instance.add_dynamic_partitions("channels", ["test-title"])
    result = dg.materialize(
        [channel_ident],
        partition_key="test-title",
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, channels),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "'Llama Bakery', was refused by the judge" in message
    assert "mocks a real bakery" in message
    assert not media_store.list_keys("channels/test-title/")
    # Accepted: the ident is made, and its record says who let the title through.
    llm.answer(json.dumps({"allowed": True, "reason": "a friendly name"}))
    result = dg.materialize(
        [channel_ident],
        partition_key="test-title",
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, channels),
    )
    assert result.success and media_store.list_keys("channels/test-title/")
    metadata = latest_metadata(instance, channel_ident, "test-title")
    assert metadata["title_judged_by"].startswith("judge http://127.0.0.1")
    assert metadata["title_judged_by"].endswith(": a friendly name")
