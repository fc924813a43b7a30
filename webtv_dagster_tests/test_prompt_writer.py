import pytest

from webtv_dagster.backends.prompt_writer import PromptRuleError, RuleBasedPromptWriter
from webtv_dagster.prompt_rules import prompt_problems


@pytest.fixture
def writer():
    return RuleBasedPromptWriter()


def test_prompts_follow_the_rules_for_every_channel(writer, channels):
    for channel in channels.channels:
        for seed in range(40):
            prompt = writer.write(channel, seed, []).prompt
            assert prompt_problems(prompt, channel) == [], prompt
            for detail in channel.recurring_details:
                assert detail in prompt


def test_same_seed_same_prompt_and_seeds_vary(writer, llama_channel):
    first = writer.write(llama_channel, 3, []).prompt
    assert writer.write(llama_channel, 3, []).prompt == first
    prompts = {writer.write(llama_channel, seed, []).prompt for seed in range(20)}
    assert len(prompts) >= 18


def test_recent_prompts_are_not_repeated(writer, llama_channel):
    recent = []
    for seed in range(30):
        prompt = writer.write(llama_channel, seed % 3, recent).prompt
        assert prompt not in recent
        recent.append(prompt)


def test_theme_is_the_subject_without_channel_vocabulary(writer, channels):
    ocean = channels.channels[1]
    assert writer.write(ocean, 1, []).prompt.startswith("sea creatures at work")


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("shot on Canon EOS", "'canon'"),
        ("IMAX quality", "'imax'"),
        ("drone footage of the bay", "'drone footage'"),
        ("the Llama Test Card logo", "'llama test card'"),
    ],
)
def test_rules_catch_words_models_paint_as_text(llama_channel, bad, problem):
    good = (
        "the llama, a fluffy cream-coloured llama with a red knitted scarf, baking bread, "
        "the camera pans slowly from left to right, warm golden hour sunlight"
    )
    assert prompt_problems(good, llama_channel) == []
    problems = prompt_problems(f"{good}, {bad}", llama_channel)
    assert any(problem in p for p in problems), problems


def test_rules_want_camera_direction_lighting_and_details(llama_channel):
    problems = prompt_problems("a llama in a field", llama_channel)
    joined = " | ".join(problems)
    assert "camera movement" in joined
    assert "direction" in joined
    assert "lighting" in joined
    assert "recurring detail missing" in joined
    assert prompt_problems("", llama_channel) == ["the prompt is empty"]


def test_channel_vocabulary_that_breaks_the_rules_is_refused(writer, llama_channel):
    branded = llama_channel.model_copy(update={"subjects": ["a GoPro-wearing llama"]})
    with pytest.raises(PromptRuleError, match="gopro"):
        writer.write(branded, 1, [])
