"""A channel's on-air graphics (Channel.graphics) as one overlay per clip (an ASS script and a
logo image), drawn into the broadcast clip by media/broadcast.normalize_clip: the channel bug
(its logo or its title, top right, the whole clip) and a lower third (a caption of the shot, and
"Requested by <name>" for a viewer's request, lower left, faded in at 0.5 s and out after
`lower_third_seconds`). Both sit inside the title-safe area; the quality checks measure that
they do. Viewers' words are drawn as written (media/captions.ass_text).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from webtv_dagster.broadcast_profile import BroadcastProfile
from webtv_dagster.channels import BUG_IMAGE_MAX_BYTES, Channel
from webtv_dagster.media.captions import (
    TITLE_SAFE_MARGIN,
    Overlay,
    ass_script,
    ass_text,
    ass_time,
)
from webtv_dagster.media.ffmpeg import MediaToolError, run_ffmpeg

CAPTION_CHARACTERS = 60  # a lower third is read in a glance
LOWER_THIRD_STARTS = 0.5  # seconds into the clip, after the cut
FADE_MILLISECONDS = 300


def shot_caption(prompt: str, idea: str | None) -> str:
    """What the lower third says of the shot: the viewer's idea, or the prompt's first words,
    cut at a word within CAPTION_CHARACTERS."""
    text = " ".join((idea or prompt).split())
    if len(text) <= CAPTION_CHARACTERS:
        return text
    cut = text[: CAPTION_CHARACTERS - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return f"{cut}…"


def graphics_script(
    channel: Channel,
    profile: BroadcastProfile,
    prompt: str,
    idea: str | None,
    requested_by: str | None,
) -> str | None:
    """The clip's graphics as an ASS script, or None when it has no text to draw."""
    graphics = channel.graphics
    title_bug = graphics.bug and graphics.bug_image is None
    if not (title_bug or graphics.lower_third):
        return None
    width, height = profile.width, profile.height
    inset_x, inset_y = _insets(profile)
    size = round(height / 24)
    styles = [
        f"Style: Bug,DejaVu Sans,{size},&H40FFFFFF,&H00000000,&H80000000,1,2,0,9,"
        f"{inset_x},{inset_x},{inset_y}",
        f"Style: Lower,DejaVu Sans,{size},&H00FFFFFF,&H80000000,&H00000000,3,6,0,1,"
        f"{inset_x},{width // 3},{inset_y}",
        f"Style: Credit,DejaVu Sans,{round(size * 0.8)},&H007AD2FF,&H80000000,&H00000000,3,6,0,1,"
        f"{inset_x},{width // 3},{inset_y}",
    ]
    end = ass_time(9 * 3600)
    events = []
    if title_bug:
        events.append(f"Dialogue: 0,0:00:00.00,{end},Bug,{ass_text(channel.title)}")
    if graphics.lower_third:
        start = ass_time(LOWER_THIRD_STARTS)
        stop = ass_time(LOWER_THIRD_STARTS + graphics.lower_third_seconds)
        fading = f"\\fad({FADE_MILLISECONDS},{FADE_MILLISECONDS})"
        fade = f"{{{fading}}}"
        caption = ass_text(shot_caption(prompt, idea))
        if requested_by:
            # The credit sits on the caption: the caption's line moves up by the credit's.
            above = height - inset_y - round(size * 1.5)
            lift = f"{{{fading}\\an1\\pos({inset_x},{above})}}"
            events.append(f"Dialogue: 0,{start},{stop},Lower,{lift}{caption}")
            credit = ass_text(f"Requested by {requested_by}")
            events.append(f"Dialogue: 0,{start},{stop},Credit,{fade}{credit}")
        else:
            events.append(f"Dialogue: 0,{start},{stop},Lower,{fade}{caption}")
    return ass_script(width, height, styles, events)


def _insets(profile: BroadcastProfile) -> tuple[int, int]:
    """Where graphics start from the picture's edges: a little inside the title-safe area, so
    that outlines and shadows stay in too."""
    return (
        round(profile.width * TITLE_SAFE_MARGIN) + 8,
        round(profile.height * TITLE_SAFE_MARGIN) + 8,
    )


def clip_overlay(
    channel: Channel,
    profile: BroadcastProfile,
    prompt: str,
    idea: str | None,
    requested_by: str | None,
    folder: Path,
) -> Overlay | None:
    """The clip's graphics (its script written into `folder`), or None when the channel has
    none."""
    script = graphics_script(channel, profile, prompt, idea, requested_by)
    script_path = None
    if script is not None:
        script_path = folder / "graphics.ass"
        script_path.write_text(script, encoding="utf-8")
    logo = channel.graphics.bug_image
    if script_path is None and logo is None:
        return None
    inset_x, inset_y = _insets(profile)
    return Overlay(
        script=script_path,
        logo=checked_bug_image(logo) if logo is not None else None,
        logo_size=(profile.width // 4, profile.height // 8),
        logo_margins=(inset_x, inset_y),
    )


def checked_bug_image(path: Path) -> Path:
    """`path` when it is a picture FFmpeg reads, of at most BUG_IMAGE_MAX_BYTES; otherwise a
    MediaToolError saying what to change in the channels file."""
    fix = "(graphics.bug_image in the channels file)"
    try:
        size = path.stat().st_size
    except OSError as error:
        why = error.strerror
        raise MediaToolError(f"the bug image {path} cannot be read {fix}: {why}") from None
    if size > BUG_IMAGE_MAX_BYTES:
        raise MediaToolError(
            f"the bug image {path} is {size / 2**20:.1f} MB, over "
            f"{BUG_IMAGE_MAX_BYTES // 2**20} MB {fix}: save it smaller"
        )
    try:  # decoded once, as the broadcast stage will (a probe believes a file's header)
        run_ffmpeg(
            [*Overlay(logo=path).inputs(), "-frames:v", "1", "-f", "null", "-"],
            f"decoding the bug image {path.name}",
        )
    except MediaToolError as error:
        why = f"the bug image {path} is not a picture FFmpeg reads {fix}: {error}"
        raise MediaToolError(why) from None
    return path


def bug_image_digest(path: Path) -> str:
    """What a clip's record says of its logo: enough to know which file drew it."""
    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
