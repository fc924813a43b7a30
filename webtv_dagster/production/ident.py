"""A channel's ident: the filler clip its playout airs when it has no clip of its own to air.

It is made like a clip, with the offline backends (a procedural take, Lanczos upscale, optical
flow interpolation, procedural music: no remote model, seconds on a CPU), the channel's title
written on it, normalized to the broadcast profile, and stored in the bucket (clips.ident_key)
by the `channel_ident` asset. The playout only fetches it (playout/library.py).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from webtv_dagster.backends.interpolator import InterpolationRequest, OpticalFlowInterpolator
from webtv_dagster.backends.moderator import Moderator, Verdict
from webtv_dagster.backends.music import MusicRequest, ProceduralMusicGenerator
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TakeRequest
from webtv_dagster.backends.upscaler import LanczosUpscaler, UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ident_key
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.captions import ass_filter, ass_script, ass_text
from webtv_dagster.media.conform import INTERMEDIATE_X264
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media_store import MediaStore
from webtv_dagster.storage import StoredObject

IDENT_FRAMES = 128  # 5.333 s: two gapless units
IDENT_BACKENDS = "offline: procedural text-to-video, Lanczos, optical flow, procedural music"


def ident_prompt(channel: Channel) -> str:
    return (
        f"an abstract channel ident for {channel.theme}, slow zoom in on the subject, "
        "glowing neon night lighting"
    )


def ident_fingerprint(channel: Channel) -> str:
    """Short digest of what the channel's ident is made from (title, theme, mood, seed, frames):
    it changes exactly when the ident must be made again."""
    made_from = "\n".join(
        [
            channel.title,
            channel.theme,
            str(channel.music_mood),
            str(channel.seed),
            str(IDENT_FRAMES),
        ]
    )
    return hashlib.sha256(made_from.encode()).hexdigest()[:12]


class TitleRefused(ValueError):
    """A moderator refused the channel's title, which the ident, the bug, the viewer and the
    guide show: nothing of the channel is made until it changes."""


def judge_title(channel: Channel, moderators: list[Moderator]) -> Verdict:
    """The channel's title judged like the prompts a writer writes (word list, then the
    channel's judge): the last approval, or TitleRefused with the first refusal's reason."""
    verdict = Verdict(allowed=True, reason="no moderator", decided_by="nobody")
    for moderator in moderators:
        verdict = moderator.judge(channel.title, channel)
        if not verdict.allowed:
            raise TitleRefused(
                f"the title of channel {channel.slug}, {channel.title!r}, was refused by the "
                f"{verdict.decided_by}: {verdict.reason} (change `title` in the channels file)"
            )
    return verdict


def title_subtitles(title: str, width: int, height: int) -> str:
    """An ASS script that shows `title` centred for the whole clip, as written (media/captions:
    every script, nothing a template or an override)."""
    style = "Style: Title,DejaVu Sans,64,&H00FFFFFF,&H00000000,&H00000000,1,3,0,5,40,40,0"
    event = f"Dialogue: 0,0:00:00.00,9:59:59.00,Title,{ass_text(title)}"
    return ass_script(width, height, [style], [event])


def write_title(video: Path, title: str, output: Path) -> None:
    """Draws the title on `video` (as written, see title_subtitles) into `output`."""
    info = probe(video).video
    script = output.with_suffix(".ass")
    script.write_text(title_subtitles(title, info.width, info.height), encoding="utf-8")
    run_ffmpeg(
        ["-i", str(video), "-vf", ass_filter(script), *INTERMEDIATE_X264, str(output)],
        f"writing {title!r} on the ident",
    )


def make_ident(channel: Channel, output: Path) -> Path:
    """The channel's ident, made with the offline backends, the title written on it, in the
    broadcast profile."""
    with tempfile.TemporaryDirectory(prefix="webtv-ident-") as scratch:
        folder = Path(scratch)
        prompt = ident_prompt(channel)
        take = folder / "take.mp4"
        ProceduralTextToVideo().render(TakeRequest(prompt=prompt, seed=channel.seed), take)
        LanczosUpscaler().upscale(take, UpscaleRequest(prompt=prompt), folder / "u.mp4")
        frames = IDENT_FRAMES
        OpticalFlowInterpolator().interpolate(
            folder / "u.mp4", InterpolationRequest(frames=frames), folder / "i.mp4"
        )
        write_title(folder / "i.mp4", channel.title, folder / "titled.mp4")
        music = MusicRequest(
            prompt=prompt,
            mood=channel.music_mood,
            seed=channel.seed,
            seconds=frames / BROADCAST_PROFILE.fps,
        )
        ProceduralMusicGenerator().compose(music, folder / "m.flac")
        partial = output.with_suffix(".part.mp4")
        normalize_clip(folder / "titled.mp4", folder / "m.flac", frames, partial, BROADCAST_PROFILE)
        partial.replace(output)
    return output


def publish_ident(store: MediaStore, slug: str, ident: Path) -> StoredObject:
    """Stores the ident where the channel's playout fetches it (clips.ident_key)."""
    return store.upload_file(ident, ident_key(slug), "video/mp4")
