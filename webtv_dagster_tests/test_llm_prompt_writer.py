import json

import pytest

from webtv_dagster.backends.prompt_writer import OpenAIPromptWriter, PromptWriterError
from webtv_dagster.model_endpoints import OpenAIEndpoint

from .fake_llm import FakeLLM

DETAIL = "a fluffy cream-coloured llama with a red knitted scarf"


def good_prompt(action: str) -> str:
    return (
        f"the llama, {DETAIL}, {action}, the camera pans slowly from left to right, "
        "warm golden hour sunlight, Pixar style 3D animation"
    )


GOOD = [good_prompt(a) for a in ("baking bread", "repairing a bicycle", "painting a mural")]


@pytest.fixture
def llm():
    server = FakeLLM(json.dumps({"prompts": GOOD}))
    yield server
    server.close()


def writer_for(llm, **overrides):
    config = OpenAIEndpoint(
        kind="openai", base_url=llm.base_url, model="fake", batch_size=3, **overrides
    )
    return OpenAIPromptWriter(config, api_key="sk-test-secret-key")


def test_good_batch_gives_a_prompt_with_structured_output(llm, llama_channel):
    written = writer_for(llm).write(llama_channel, 5, [])
    assert written.prompt == GOOD[0]
    assert (written.backend, written.attempts) == ("openai", 1)
    assert written.endpoint == f"{llm.base_url} (fake)"
    request = llm.requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert request["seed"] == 5
    assert DETAIL in request["messages"][0]["content"]


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("here are some prompts!", "holds no JSON"),
        (json.dumps({"prompts": []}), "Answer again with 3"),
        (json.dumps({"prompts": [GOOD[0], GOOD[0]]}), "prompt 2 repeats"),
        (json.dumps({"prompts": ["a llama in IMAX", ""]}), "prompt 1:"),
        (json.dumps({"answer": "no"}), 'no "prompts" list'),
        ("[" * 100_000 + "]" * 100_000, "characters; a batch needs far fewer"),
        ('{"prompts": ' + "[" * 20_000 + "]" * 20_000 + "}", "holds no JSON"),
    ],
)
def test_answers_without_a_usable_prompt_are_asked_again_with_the_problems(
    llm, llama_channel, bad, problem
):
    if "repeats" in problem:  # both repeat a recent prompt, the second also the first
        recent = [GOOD[0]]
    else:
        recent = []
    llm.answer(bad)
    written = writer_for(llm).write(llama_channel, 1, recent)
    assert written.attempts == 2
    feedback = llm.requests[1]["messages"][-1]["content"]
    assert problem in feedback
    assert llm.requests[1]["messages"][-2] == {"role": "assistant", "content": bad}


def test_every_usable_prompt_of_an_answer_is_kept_and_only_repeats_are_dropped(llm, llama_channel):
    """Chatter and fences around the JSON, more prompts than asked, a first prompt that repeats
    an earlier clip's and one that breaks the rules: one request, the rest kept as spares."""
    fresh = [good_prompt(a) for a in ("delivering letters", "tuning a piano", "ice skating")]
    answer = (
        "Sure! Here are your prompts:\n```json\n"
        + json.dumps({"prompts": [GOOD[1], fresh[0], "a llama in IMAX", *fresh[1:]]})
        + "\n```\nLet me know if you want more."
    )
    llm.answer(answer)
    written = writer_for(llm).write(llama_channel, 1, [GOOD[1]])
    assert (written.prompt, written.spares, written.attempts) == (fresh[0], fresh[1:], 1)
    assert len(llm.requests) == 1


def test_recent_prompts_are_sent_and_not_repeated(llm, llama_channel):
    llm.answer(json.dumps({"prompts": [GOOD[1], GOOD[2]]}))
    written = writer_for(llm).write(llama_channel, 1, [GOOD[1]])
    assert (written.prompt, written.spares) == (GOOD[2], [])
    assert GOOD[1] in llm.requests[0]["messages"][1]["content"]


def test_output_that_stays_bad_fails_naming_endpoint_and_problems(llm, llama_channel):
    for _ in range(3):
        llm.answer(json.dumps({"prompts": ["a llama in IMAX"]}))
    with pytest.raises(PromptWriterError) as error:
        writer_for(llm, max_attempts=3).write(llama_channel, 1, [])
    message = str(error.value)
    assert llm.base_url in message and "3 attempt(s)" in message
    assert "prompt 1: contains 'imax'" in message


def test_a_slow_endpoint_fails_within_the_prompt_budget(llm, llama_channel):
    """An endpoint that never answers in time: a few requests, then a clear error once the
    prompt's time budget is spent (it once took 380 s)."""
    import time

    llm.delay_seconds = 5
    started = time.monotonic()
    with pytest.raises(PromptWriterError) as error:
        writer_for(llm, timeout_seconds=1, total_seconds=3).write(llama_channel, 1, [])
    assert time.monotonic() - started < 6
    assert "gave no answer within 3 s" in str(error.value)
    assert "APITimeoutError" in str(error.value)


@pytest.mark.parametrize("header", ["-1", "nan", "inf", "soon", "1e9"])
def test_a_hostile_retry_after_header_is_bounded(header):
    from types import SimpleNamespace

    from webtv_dagster.backends.prompt_writer import _retry_after

    error = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": header}))
    wait = _retry_after(error)
    assert wait is None or 0 <= wait <= 60


def test_rate_limits_are_retried_with_backoff(llm, llama_channel):
    llm.fail(429, "slow down")
    llm.fail(429, "slow down")
    written = writer_for(llm).write(llama_channel, 1, [])
    assert written.prompt == GOOD[0]
    assert len(llm.requests) == 3


def test_endless_rate_limits_fail_clearly_without_the_key(llm, llama_channel):
    for _ in range(10):
        llm.fail(429, "slow down")
    with pytest.raises(PromptWriterError) as error:
        writer_for(llm, rate_limit_retries=2).write(llama_channel, 1, [])
    assert "RateLimitError" in str(error.value) and llm.base_url in str(error.value)
    assert "sk-test-secret-key" not in str(error.value)


def test_servers_without_structured_output_get_plain_json(llm, llama_channel):
    llm.fail(400, "response_format json_schema is not supported")
    writer = writer_for(llm)
    assert writer.write(llama_channel, 1, []).prompt == GOOD[0]
    assert "response_format" not in llm.requests[1]
    assert writer.write(llama_channel, 2, []).attempts == 1
    assert "response_format" not in llm.requests[2]


@pytest.mark.parametrize(
    "answer",
    [
        "```json\n" + json.dumps(GOOD) + "\n```",
        "Here you go: " + json.dumps({"prompts": GOOD}) + " Enjoy!",
        "```\n" + json.dumps({"prompts": [{"prompt": p} for p in GOOD]}) + "\n```",
        "Following rules [1] and [2]: " + json.dumps({"prompts": GOOD}),
    ],
)
def test_json_is_found_among_fences_and_chatter(llm, llama_channel, answer):
    llm.answer(answer)
    written = writer_for(llm).write(llama_channel, 1, [])
    assert (written.prompt, written.spares, written.attempts) == (GOOD[0], GOOD[1:], 1)


def writer_channels_file(tmp_path, llm):
    """A channels file whose one channel (test-remote) writes its prompts with `llm`, three
    a request."""
    path = tmp_path / "channels.yaml"
    path.write_text(
        "models:\n"
        f'  writer: {{kind: openai, base_url: "{llm.base_url}", model: fake, batch_size: 3}}\n'
        "channels:\n"
        "  - {slug: test-remote, title: Remote, theme: llamas doing human jobs,\n"
        "     style: Pixar style 3D animation, recurring_details: [" + DETAIL + "],\n"
        "     backends: {prompt_writer: writer}}\n"
    )
    return path


def test_a_run_airs_every_prompt_of_an_answer_before_asking_again(
    llm, instance, seaweedfs, media_store, tmp_path
):
    """Four clips in one run through the real shot_prompt asset: the first answer's three
    prompts go to clips 1-3 (2 and 3 as spares kept in clip 1's record), clip 4 asks again."""
    import dagster as dg

    from webtv_dagster import clips
    from webtv_dagster.clips import ClipId
    from webtv_dagster.defs.clip_production.assets import shot_prompt

    from .conftest import clip_resources, latest_metadata

    fresh = [good_prompt(a) for a in ("delivering letters", "tuning a piano", "ice skating")]
    llm.answer(json.dumps({"prompts": GOOD}))
    llm.answer(json.dumps({"prompts": fresh}))
    channels = writer_channels_file(tmp_path, llm)
    keys = [f"test-remote-00000{n}" for n in range(1, 5)]
    instance.add_dynamic_partitions("clips", keys)
    result = dg.materialize(
        [shot_prompt],
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, channels),
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert result.success
    prompts = [
        media_store.get_json(ClipId.parse(key).object_key(clips.PROMPT))["prompt"] for key in keys
    ]
    assert prompts == [*GOOD, fresh[0]]
    assert len(llm.requests) == 2
    assert latest_metadata(instance, shot_prompt, keys[2])["from_batch_of"] == keys[0]
    assert latest_metadata(instance, shot_prompt, keys[2])["attempts"] == 0
    assert all(p in llm.requests[1]["messages"][1]["content"] for p in GOOD)
