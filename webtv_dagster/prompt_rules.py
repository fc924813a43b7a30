"""What makes a shot prompt good for a text-to-video model (after the seed article).

A prompt names its subject, what the subject does, how the camera moves and in which direction,
the lighting and the look; it repeats the channel's recurring details so that shots stay
consistent; and it avoids words a video model paints into the picture as text or objects
("IMAX", camera brands, drone names, the channel's own name).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the channels file checks its channels with these rules
    from webtv_dagster.channels import Channel

CAMERA_MOVES = (
    "the camera pans slowly from left to right",
    "the camera pans slowly from right to left",
    "slow dolly in toward the subject",
    "slow dolly out away from the subject",
    "the camera tilts up slowly from the ground to the sky",
    "the camera tilts down slowly from the sky to the subject",
    "tracking shot following the subject from left to right",
    "tracking shot following the subject from right to left",
    "crane shot rising slowly upward over the scene",
    "slow orbit clockwise around the subject",
    "slow zoom in on the subject",
    "slow zoom out revealing the surroundings",
)
SUBJECT_MOTIONS = (
    "facing the camera",
    "moving steadily to the right",
    "moving steadily to the left",
    "walking toward the camera",
    "turning slowly to the left",
    "turning slowly to the right",
)
LIGHTING = (
    "warm golden hour sunlight",
    "soft overcast daylight",
    "bright midday sun with crisp shadows",
    "pink and orange sunrise light",
    "cool blue moonlight",
    "glowing neon night lighting",
    "soft candlelight with deep shadows",
    "misty morning light",
)
LOOKS = (
    "shallow depth of field",
    "high detail",
    "smooth motion",
    "film grain",
    "rich colour grading",
    "cinematic composition",
)
DEFAULT_ACTIONS = (
    "looking around curiously",
    "working carefully with both hands",
    "laughing and waving",
    "carrying a heavy wooden crate",
    "dancing with joy",
    "reading a large map",
)
DEFAULT_SETTINGS = (
    "a quiet forest clearing",
    "a busy city street",
    "a sandy beach",
    "a cosy wooden cabin",
    "a colourful market square",
    "a mountain meadow",
)

CAMERA_PATTERN = re.compile(
    r"\b(pan|pans|panning|tilt|tilts|dolly|tracking|zoom|orbit|crane|"
    r"push(?:es)? in|pull(?:s)? back)\b",
    re.I,
)
DIRECTION_PATTERN = re.compile(
    r"\b(left|right|upward|downward|up|down|toward|towards|away|forward|backward|"
    r"clockwise|counterclockwise)\b|\b(?:dolly|zoom|push|pull)(?:es|s)? (?:in|out|back)\b",
    re.I,
)
LIGHTING_PATTERN = re.compile(
    r"\b(light|lighting|lit|sun|sunlight|sunrise|sunset|golden hour|moonlight|neon|"
    r"candlelight|daylight|shadows|glow|glowing)\b",
    re.I,
)
# Words that video models tend to render as written text or as the named object.
TEXT_TRIGGER_TERMS = (
    "imax",
    "4k",
    "8k",
    "canon",
    "nikon",
    "sony",
    "panasonic",
    "fujifilm",
    "arri",
    "red epic",
    "blackmagic",
    "gopro",
    "dji",
    "phantom",
    "hasselblad",
    "leica",
    "drone footage",
    "trending on artstation",
    "artstation",
    "unreal engine",
    "watermark",
    "logo",
    "caption",
    "subtitle",
    "signature",
    "text",
)

MAX_PROMPT_WORDS = 75  # CLIP-based text encoders stop reading at 77 tokens.


def forbidden_terms(channel: Channel) -> list[str]:
    return list(dict.fromkeys([*TEXT_TRIGGER_TERMS, *(t.lower() for t in channel.forbidden_terms)]))


def _contains_term(text: str, term: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.I) is not None


def prompt_problems(prompt: str, channel: Channel) -> list[str]:
    """Every way `prompt` breaks the rules above; empty when it follows them."""
    problems: list[str] = []
    words = prompt.split()
    if not words:
        return ["the prompt is empty"]
    if len(words) > MAX_PROMPT_WORDS:
        problems.append(f"{len(words)} words; at most {MAX_PROMPT_WORDS} are read by the model")
    if not CAMERA_PATTERN.search(prompt):
        problems.append("no camera movement (pan, tilt, dolly, tracking, zoom, orbit, crane)")
    if not DIRECTION_PATTERN.search(prompt):
        problems.append("no direction of movement (left, right, up, down, in, out, toward...)")
    if not LIGHTING_PATTERN.search(prompt):
        problems.append("no lighting (sunlight, moonlight, neon, golden hour...)")
    for detail in channel.recurring_details:
        if detail.lower() not in prompt.lower():
            problems.append(f"recurring detail missing: {detail!r}")
    for term in forbidden_terms(channel):
        if _contains_term(prompt, term):
            problems.append(f"contains {term!r}, which models paint into the picture")
    return problems


# Words a prompt needs beyond the channel's fixed ones: subject, action, setting, camera move
# with its direction, lighting.
MIN_SHOT_WORDS = 20


def _longest(options: tuple[str, ...] | list[str], count: int = 1) -> int:
    return sum(sorted((len(option.split()) for option in options), reverse=True)[:count])


def fixed_word_problems(channel: Channel) -> list[str]:
    """How the channel's fixed words would make its prompts break the rules, for the channels
    file check: a forbidden term in the style, a recurring detail or the vocabulary (in every
    prompt that uses it), style and recurring details that leave too few words for the shot,
    and, with the offline writer, vocabulary whose longest combination runs over the limit."""
    problems = []
    fields = {
        "style": [channel.style],
        "recurring_details": channel.recurring_details,
        "subjects": channel.subjects or [channel.theme],
        "actions": channel.actions,
        "settings": channel.settings,
    }
    for field, texts in fields.items():
        if field == "subjects" and not channel.subjects:
            field = "theme"  # the subject of every offline prompt then
        for text in texts:
            for term in forbidden_terms(channel):
                if _contains_term(text, term):
                    problems.append(
                        f"field {field!r}: {text!r} contains {term!r}, which models paint into "
                        "the picture (the prompts that use it would all be refused)"
                    )
    fixed = len(channel.style.split()) + sum(len(d.split()) for d in channel.recurring_details)
    if fixed + MIN_SHOT_WORDS > MAX_PROMPT_WORDS:
        problems.append(
            f"fields 'style' and 'recurring_details': their {fixed} words are in every prompt, "
            f"leaving {MAX_PROMPT_WORDS - fixed} of {MAX_PROMPT_WORDS} for the shot; at least "
            f"{MIN_SHOT_WORDS} are needed"
        )
    elif channel.backends.prompt_writer == "rule-based":
        longest = (
            fixed
            + _longest(channel.subjects or [channel.theme])
            + _longest(channel.actions or DEFAULT_ACTIONS)
            + 1
            + _longest(channel.settings or DEFAULT_SETTINGS)
            + _longest(SUBJECT_MOTIONS)
            + _longest(CAMERA_MOVES)
            + _longest(LIGHTING)
            + _longest(LOOKS, 2)
        )
        if longest > MAX_PROMPT_WORDS:
            problems.append(
                f"fields 'subjects', 'actions', 'settings': the offline writer's longest prompt "
                f"would have {longest} words; at most {MAX_PROMPT_WORDS} are read (shorten the "
                "longest entries)"
            )
    return problems
