"""A channel's programme guide in XMLTV, the EPG format that Kodi, Plex, Jellyfin, TVHeadend
and the XMLTV tools read: the clip on air and the clips ahead of air with their planned start
and stop times (air_plan.planned_air: the playout's schedule, then the playlist).

Every text in it comes from outside (prompts from an LLM, names from viewers): the document is
built with ElementTree, which escapes markup, after characters XML 1.0 cannot carry (and the C1
controls it discourages) are dropped and lengths are bounded. It lists at most
air_plan.MAX_PLANNED (200) programmes, with titles of MAX_TITLE and descriptions of MAX_DESC
characters at most: a few hundred kB in the worst case.

A viewer's credit for a requested shot goes in the description ("Requested by <name>, a
viewer.") with the keyword "viewer request": XMLTV's <credits> name the people who make or appear
in a programme, which a viewer who suggested a shot is not, and every guide reader shows the
description.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from webtv_dagster.channels import Channel
from webtv_dagster.playout.air_plan import PlannedClip, planned_air
from webtv_dagster.playout.playlist import Playlist
from webtv_dagster.playout.sources import IDENT
from webtv_dagster.playout.state import PlayoutState

CONTENT_TYPE = "application/xml; charset=utf-8"
MAX_TITLE = 80
MAX_DESC = 1_000
MAX_NAME = 40  # a requester's name
# Characters XML 1.0 forbids (C0 controls but tab, newline and return; surrogates; U+FFFE/F),
# and the DEL and C1 controls it discourages.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def one_line(text: str) -> str:
    """`text` without what XML 1.0 cannot carry, its white space folded to single spaces."""
    return " ".join(_NOT_XML.sub("", text).split())


def xml_text(text: str, limit: int) -> str:
    """`text` on one line without what XML 1.0 cannot carry, at most `limit` characters (cut
    at a word, with an ellipsis)."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def programme_title(clip: PlannedClip, channel: Channel) -> str:
    """A short title a guide reader can scan: the shot's first clauses (who does what, where),
    without the details every prompt of the channel repeats."""
    if clip.clip_id == IDENT:
        return f"{channel.title} ident"
    text = clip.prompt
    for detail in channel.recurring_details:
        text = text.replace(detail, "")
    clauses = [part.strip() for part in one_line(text).split(",") if part.strip()]
    return xml_text(", ".join(clauses[:3]), MAX_TITLE) or xml_text(clip.clip_id, MAX_TITLE)


def xmltv_time(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y%m%d%H%M%S +0000")


def guide_times(plan: list[PlannedClip]) -> list[tuple[str, str]]:
    """Each clip's start and stop in XMLTV's whole seconds. A clip that airs within a second of
    the one before it stops (the publisher's pacing, a restart) is shown starting where that one
    stops, so that the guide has neither overlaps nor gaps that are only rounding."""
    times: list[tuple[str, str]] = []
    for index, clip in enumerate(plan):
        back_to_back = index > 0 and abs(clip.starts_at - plan[index - 1].stops_at) < 1
        start = times[-1][1] if back_to_back else xmltv_time(clip.starts_at)
        times.append((start, max(start, xmltv_time(clip.stops_at))))  # same format: by time
    return times


def channel_id(channel: Channel) -> str:
    return f"{channel.slug}.webtv"


def channel_xmltv(
    channel: Channel,
    state: PlayoutState | None,
    playlist: Playlist | None,
    now: float | None = None,
) -> bytes:
    """The channel's guide as an XMLTV document (UTF-8, with the DOCTYPE of xmltv.dtd)."""
    now = time.time() if now is None else now
    tv = ET.Element(
        "tv",
        {
            "generator-info-name": "webtv-dagster",
            "source-info-name": xml_text(channel.title, MAX_TITLE),
        },
    )
    element = ET.SubElement(tv, "channel", {"id": channel_id(channel)})
    ET.SubElement(element, "display-name", {"lang": "en"}).text = xml_text(channel.title, 200)
    plan = planned_air(state, playlist, now)
    for clip, (start, stop) in zip(plan, guide_times(plan), strict=True):
        programme = ET.SubElement(
            tv,
            "programme",
            {
                "start": start,
                "stop": stop,
                "channel": channel_id(channel),
            },
        )
        ET.SubElement(programme, "title", {"lang": "en"}).text = programme_title(clip, channel)
        desc = xml_text(clip.prompt, MAX_DESC)
        requester = xml_text(clip.requested_by or "", MAX_NAME)
        if requester:
            desc = f"{desc} (Requested by {requester}, a viewer.)".strip()
        if desc:  # XMLTV refuses an empty description
            ET.SubElement(programme, "desc", {"lang": "en"}).text = desc
        ET.SubElement(programme, "category", {"lang": "en"}).text = "AI-generated"
        if requester:
            ET.SubElement(programme, "keyword", {"lang": "en"}).text = "viewer request"
        length = ET.SubElement(programme, "length", {"units": "seconds"})
        length.text = str(round(clip.duration_seconds))
        episode = ET.SubElement(programme, "episode-num", {"system": "webtv-clip"})
        episode.text = xml_text(clip.clip_id, MAX_TITLE)
    ET.indent(tv)
    body = ET.tostring(tv, encoding="unicode")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n' + body + "\n"
    ).encode("utf-8")
