"""A channel's on-air graphics (Channel.graphics) as one ASS script per clip, drawn into the
broadcast clip by media/broadcast.normalize_clip: the channel bug (its title, top right, the
whole clip) and a lower third (a caption of the shot, and "Requested by <name>" for a viewer's
request, lower left, faded in at 0.5 s and out after `lower_third_seconds`). Both sit inside
the title-safe area; the quality checks measure that they do. Viewers' words are drawn as
written (media/captions.ass_text).
"""

from __future__ import annotations

from webtv_dagster.broadcast_profile import BroadcastProfile
from webtv_dagster.channels import Channel
from webtv_dagster.media.captions import TITLE_SAFE_MARGIN, ass_script, ass_text, ass_time

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
    """The clip's graphics, or None when the channel has none."""
    graphics = channel.graphics
    if not graphics.any:
        return None
    width, height = profile.width, profile.height
    margin_x, margin_y = round(width * TITLE_SAFE_MARGIN), round(height * TITLE_SAFE_MARGIN)
    # A little inside the safe edge: outlines and shadows stay in too.
    inset_x, inset_y = margin_x + 8, margin_y + 8
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
    if graphics.bug:
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
