"""Prompt writers: turn a channel's theme and style into specific video-shot prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import openai
from openai import OpenAI
from pydantic import BaseModel

from webtv_dagster.channels import Channel
from webtv_dagster.model_endpoints import OpenAIEndpoint
from webtv_dagster.prompt_rules import (
    CAMERA_MOVES,
    DEFAULT_ACTIONS,
    DEFAULT_SETTINGS,
    LIGHTING,
    LOOKS,
    MAX_PROMPT_WORDS,
    SUBJECT_MOTIONS,
    forbidden_terms,
    prompt_problems,
)
from webtv_dagster.secrets import mask_text, mask_url, url_secrets


class WrittenPrompt(BaseModel):
    prompt: str
    backend: str
    endpoint: str
    attempts: int = 1


class PromptWriter(Protocol):
    name: str

    def write(self, channel: Channel, seed: int, recent_prompts: Sequence[str]) -> WrittenPrompt:
        """A new shot prompt for `channel`, unlike the `recent_prompts`."""
        ...


class PromptRuleError(ValueError):
    """A writer produced a prompt that breaks the prompt rules."""


class RuleBasedPromptWriter:
    """Composes prompts from the channel's vocabulary and built-in shot grammar, seeded.

    The same channel, seed and history give the same prompt; a prompt already in the recent
    history is never repeated while an unused combination remains.
    """

    name = "rule-based"
    endpoint = "offline"
    attempts_before_repeat = 64

    def write(self, channel: Channel, seed: int, recent_prompts: Sequence[str]) -> WrittenPrompt:
        rng = np.random.default_rng([channel.seed, seed])
        recent = {prompt.strip().lower() for prompt in recent_prompts}
        prompt = self._compose(channel, rng)
        for _ in range(self.attempts_before_repeat):
            if prompt.lower() not in recent:
                break
            prompt = self._compose(channel, rng)
        problems = prompt_problems(prompt, channel)
        if problems:
            # Only channel vocabulary can break a rule here (e.g. a subject naming a brand).
            raise PromptRuleError(
                f"channel {channel.slug!r}: its vocabulary makes prompts that break the rules: "
                + "; ".join(problems)
            )
        return WrittenPrompt(prompt=prompt, backend=self.name, endpoint=self.endpoint)

    @staticmethod
    def _compose(channel: Channel, rng: np.random.Generator) -> str:
        def pick(options: Sequence[str]) -> str:
            return options[int(rng.integers(len(options)))]

        subject = pick(channel.subjects) if channel.subjects else channel.theme
        details = ", ".join(channel.recurring_details)
        looks = rng.choice(len(LOOKS), size=2, replace=False)
        parts = [
            f"{subject}, {details}" if details else subject,
            pick(channel.actions or DEFAULT_ACTIONS),
            f"in {pick(channel.settings or DEFAULT_SETTINGS)}",
            pick(SUBJECT_MOTIONS),
            pick(CAMERA_MOVES),
            pick(LIGHTING),
            channel.style,
            LOOKS[looks[0]],
            LOOKS[looks[1]],
        ]
        return ", ".join(parts)


class ShotPromptBatch(BaseModel):
    """The structured answer asked of an LLM."""

    prompts: list[str]


class PromptWriterError(RuntimeError):
    """The LLM could not be reached or kept answering with prompts that break the rules."""


def _instructions(channel: Channel, count: int) -> str:
    details = "; ".join(channel.recurring_details) or "(none)"
    banned = ", ".join(forbidden_terms(channel))
    return (
        "You write shot prompts for a text-to-video model that makes 3-second clips for an "
        f"around-the-clock TV channel.\nTheme: {channel.theme}\nStyle: {channel.style}\n"
        f"Recurring details, to repeat word for word in every prompt: {details}\n"
        f"Write {count} different prompts. Each names its subject and what it does, says how "
        "the camera moves and in which direction (pan left to right, dolly in toward, tilt "
        "up...), the lighting and the look, ends with the style, and has at most "
        f"{MAX_PROMPT_WORDS} words. Never use these words, which the model paints into the "
        f"picture: {banned}.\n"
        'Answer with JSON only: {"prompts": ["...", "..."]}'
    )


def batch_problems(
    prompts: Sequence[object], channel: Channel, count: int, recent: Sequence[str]
) -> list[str]:
    """Every reason the batch is unusable; empty when all of it can air."""
    problems = []
    if len(prompts) != count:
        problems.append(f"expected {count} prompts, got {len(prompts)}")
    seen = {prompt.strip().lower() for prompt in recent}
    for number, prompt in enumerate(prompts, start=1):
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"prompt {number} is empty or not text")
            continue
        if prompt.strip().lower() in seen:
            problems.append(f"prompt {number} repeats an earlier prompt")
        seen.add(prompt.strip().lower())
        problems += [f"prompt {number}: {why}" for why in prompt_problems(prompt, channel)]
    return problems


def parse_batch(text: str) -> list[object]:
    """The prompts in an answer: {"prompts": [...]} or a bare list, code fences allowed."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`").removeprefix("json").strip()
    try:
        document = json.loads(cleaned)
    except json.JSONDecodeError as error:
        raise ValueError(f"the answer is not JSON ({error.msg} at character {error.pos})") from None
    if isinstance(document, dict):
        document = document.get("prompts")
    if not isinstance(document, list):
        raise ValueError('the answer has no "prompts" list')
    return document


class OpenAIPromptWriter:
    """Shot prompts from any OpenAI-compatible chat API, as a validated structured batch.

    Asks for `batch_size` prompts at once (JSON schema response format where the server
    supports it, plain JSON otherwise), checks every one against the prompt rules, the recent
    prompts and each other, and on problems asks again with the problems listed. 429s, 5xx and
    timeouts are retried by the client with exponential backoff.
    """

    name = "openai"

    def __init__(self, config: OpenAIEndpoint, api_key: str | None, client: OpenAI | None = None):
        self.config = config
        self.endpoint = f"{mask_url(config.base_url)} ({config.model})"
        self._secrets = url_secrets(config.base_url) + ([api_key] if api_key else [])
        self._client = client or OpenAI(
            base_url=config.base_url,
            api_key=api_key or "unused",  # local servers take any key
            timeout=config.timeout_seconds,
            max_retries=config.rate_limit_retries,
        )
        self._structured = True

    def _complete(self, messages: list[dict[str, str]], seed: int) -> str:
        request: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "seed": seed,
        }
        try:
            if self._structured:
                try:
                    response = self._client.chat.completions.create(
                        **request, response_format=JSON_SCHEMA_FORMAT
                    )
                except openai.BadRequestError:
                    # Servers without structured output refuse the format: plain JSON it is.
                    self._structured = False
            if not self._structured:
                response = self._client.chat.completions.create(**request)
        except openai.APIError as error:
            raise PromptWriterError(
                f"LLM at {self.endpoint} failed: {type(error).__name__}: "
                + mask_text(error.message, self._secrets)
            ) from None
        return response.choices[0].message.content or ""

    def write(self, channel: Channel, seed: int, recent_prompts: Sequence[str]) -> WrittenPrompt:
        count = self.config.batch_size
        messages = [
            {"role": "system", "content": _instructions(channel, count)},
            {"role": "user", "content": "Recent prompts, not to repeat:\n"
             + ("\n".join(f"- {p}" for p in recent_prompts) or "(none)")},
        ]  # fmt: skip
        problems: list[str] = []
        for attempt in range(1, self.config.max_attempts + 1):
            answer = self._complete(messages, seed + attempt - 1)
            try:
                prompts = parse_batch(answer)
                problems = batch_problems(prompts, channel, count, recent_prompts)
            except ValueError as error:
                problems = [str(error)]
            if not problems:
                return WrittenPrompt(
                    prompt=str(prompts[0]).strip(),
                    backend=self.name,
                    endpoint=self.endpoint,
                    attempts=attempt,
                )
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "That batch cannot be used:\n- "
                 + "\n- ".join(problems) + f"\nAnswer again with {count} corrected prompts."},
            ]  # fmt: skip
        raise PromptWriterError(
            f"LLM at {self.endpoint} gave no usable batch of shot prompts in "
            f"{self.config.max_attempts} attempt(s); last problems: " + "; ".join(problems)
        )


JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "shot_prompts",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"prompts": {"type": "array", "items": {"type": "string"}}},
            "required": ["prompts"],
            "additionalProperties": False,
        },
    },
}
