"""Clip identity and where each clip's objects live in the bucket.

A clip id is `<channel slug>-<number>`, e.g. `llama-jobs-000042`: it is the Dagster partition
key, so every partition is a real clip of one channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from webtv_dagster.channels import Channel

# Six digits, or more without a leading zero: one channel of 8 s clips passes clip 999,999
# after three months. At most twelve (a million years of clips): a number of thousands of
# digits, from a URL, is no clip (Python refuses to read one as an int).
CLIP_KEY_PATTERN = re.compile(
    r"^(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)-(?P<number>\d{6}|[1-9]\d{6,11})$"
)

# Object names of one clip, in pipeline order.
PROMPT = "prompt.json"
RAW_TAKE = "raw.mp4"
UPSCALED_TAKE = "upscaled.mp4"
INTERPOLATED_CLIP = "interpolated.mp4"
MUSIC_TRACK = "music.flac"
BROADCAST_CLIP = "broadcast.mp4"
QUALITY_REPORT = "qc.json"
BROADCAST_RECORD = "broadcast.json"

# Image types of stage previews, by the ending of their object name.
PREVIEW_CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def preview_name(output_name: str) -> str:
    """The object name of the preview of a stage's output, stored beside it in the clip's
    folder: a contact sheet of a video (raw.mp4 -> raw.preview.jpg), the waveform of the music
    track (music.flac -> music.preview.png)."""
    stem = output_name.rsplit(".", 1)[0]
    return f"{stem}.preview.png" if output_name == MUSIC_TRACK else f"{stem}.preview.jpg"


# Every preview a clip can have: the only objects the viewer service ever serves.
PREVIEW_NAMES = frozenset(
    preview_name(name)
    for name in (RAW_TAKE, UPSCALED_TAKE, INTERPOLATED_CLIP, MUSIC_TRACK, BROADCAST_CLIP)
)


def preview_content_type(name: str) -> str:
    return PREVIEW_CONTENT_TYPES[name[name.rindex(".") :]]


class ClipId(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    number: int

    @property
    def key(self) -> str:
        return f"{self.channel}-{self.number:06d}"

    @classmethod
    def parse(cls, key: str) -> ClipId:
        match = CLIP_KEY_PATTERN.match(key)
        if not match:
            raise ValueError(
                f"{key[:80]!r} is not a clip id "
                "(expected <channel slug>-<number of 6 to 12 digits>)"
            )
        return cls(channel=match["slug"], number=int(match["number"]))

    def object_key(self, name: str) -> str:
        return f"{channel_prefix(self.channel)}clips/{self.key}/{name}"

    @classmethod
    def from_object_key(cls, key: str) -> tuple[ClipId, str]:
        """The clip and the object name of a key `object_key` makes (its inverse); a
        ValueError for any other key."""
        folder, _, name = key.rpartition("/")
        match = CLIP_KEY_PATTERN.match(folder.rpartition("/")[2])
        clip = cls(channel=match["slug"], number=int(match["number"])) if match else None
        if clip is None or not name or clip.object_key(name) != key:
            raise ValueError(f"{key!r} is not the key of a clip's object")
        return clip, name

    def seed(self, channel: Channel, reroll: int = 0) -> int:
        """The clip's seed: fixed by channel seed, clip number and reroll, so that a rerun
        reproduces the clip and a rerun with another `reroll` makes a new one."""
        return (channel.seed * 1_000_003 + self.number * 7_919 + reroll * 104_729) % 2**31


def channel_prefix(slug: str) -> str:
    return f"channels/{slug}/"


IDENT_CLIP = "ident.mp4"


def ident_key(slug: str) -> str:
    """The object key of the channel's ident, the filler clip its playout airs when it has no
    clip of its own to air (one per channel, replaced when the ident is made again)."""
    return channel_prefix(slug) + IDENT_CLIP


def clips_of_channel(keys: Iterable[str], slug: str) -> list[ClipId]:
    clips = []
    for key in keys:
        match = CLIP_KEY_PATTERN.match(key)
        if match and match["slug"] == slug:
            clips.append(ClipId(channel=slug, number=int(match["number"])))
    return sorted(clips, key=lambda clip: clip.number)
