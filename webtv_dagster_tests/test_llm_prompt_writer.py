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
        ("here are some prompts!", "not JSON"),
        (json.dumps({"prompts": GOOD[:2]}), "expected 3 prompts, got 2"),
        (json.dumps({"prompts": [GOOD[0], GOOD[0], GOOD[1]]}), "prompt 2 repeats"),
        (json.dumps({"prompts": [GOOD[0], GOOD[1], "a llama in IMAX"]}), "prompt 3:"),
        (json.dumps({"answer": GOOD}), 'no "prompts" list'),
    ],
)
def test_bad_batches_are_retried_with_the_problems_fed_back(llm, llama_channel, bad, problem):
    llm.answer(bad)
    written = writer_for(llm).write(llama_channel, 1, [])
    assert written.attempts == 2
    feedback = llm.requests[1]["messages"][-1]["content"]
    assert problem in feedback
    assert llm.requests[1]["messages"][-2] == {"role": "assistant", "content": bad}


def test_recent_prompts_are_not_repeated(llm, llama_channel):
    llm.answer(json.dumps({"prompts": GOOD}))
    llm.answer(json.dumps({"prompts": [GOOD[0], GOOD[2], good_prompt("delivering letters")]}))
    written = writer_for(llm).write(llama_channel, 1, [GOOD[1]])
    assert written.attempts == 2
    assert "prompt 2 repeats an earlier prompt" in llm.requests[1]["messages"][-1]["content"]
    assert GOOD[1] in llm.requests[0]["messages"][1]["content"]


def test_output_that_stays_bad_fails_naming_endpoint_and_problems(llm, llama_channel):
    for _ in range(3):
        llm.answer(json.dumps({"prompts": GOOD[:1]}))
    with pytest.raises(PromptWriterError) as error:
        writer_for(llm, max_attempts=3).write(llama_channel, 1, [])
    message = str(error.value)
    assert llm.base_url in message and "3 attempt(s)" in message
    assert "expected 3 prompts, got 1" in message


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


def test_code_fenced_answers_are_read(llm, llama_channel):
    llm.answer("```json\n" + json.dumps(GOOD) + "\n```")
    assert writer_for(llm).write(llama_channel, 1, []).attempts == 1
