"""Prompt writers: turn a channel's theme and style into specific video-shot prompts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from webtv_dagster.channels import Channel
from webtv_dagster.prompt_rules import (
    CAMERA_MOVES,
    DEFAULT_ACTIONS,
    DEFAULT_SETTINGS,
    LIGHTING,
    LOOKS,
    SUBJECT_MOTIONS,
    prompt_problems,
)


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
