"""A channel's programme guide in XMLTV, the EPG format that Kodi, Plex, Jellyfin, TVHeadend
and the XMLTV tools read: the clip on air and the clips ahead of air with their planned start
and stop times (air_plan.planned_air: the playout's schedule, then the playlist).

Every text in it comes from outside (prompts from an LLM, names from viewers): the document is
built with ElementTree, which escapes markup, after characters XML 1.0 cannot carry are dropped
and lengths are bounded.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from webtv_dagster.air_plan import PlannedClip, planned_air
from webtv_dagster.channels import Channel
from webtv_dagster.playlist import Playlist
from webtv_dagster.playout.state import PlayoutState

CONTENT_TYPE = "application/xml; charset=utf-8"
MAX_TITLE = 80
MAX_DESC = 1_000
# Characters XML 1.0 forbids (C0 controls but tab, newline and return; surrogates; U+FFFE/F).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str, limit: int) -> str:
    """`text` without what XML 1.0 cannot carry, on one line, at most `limit` characters (cut
    at a word, with an ellipsis)."""
    text = " ".join(_NOT_XML.sub("", text).split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def programme_title(clip: PlannedClip, channel: Channel) -> str:
    """A short title a guide reader can scan: the shot's first clauses (who does what, where),
    without the details every prompt of the channel repeats."""
    if clip.clip_id == "ident":
        return f"{channel.title} ident"
    text = clip.prompt
    for detail in channel.recurring_details:
        text = text.replace(detail, "")
    clauses = [part.strip() for part in text.split(",") if part.strip()]
    return xml_text(", ".join(clauses[:3]) or clip.clip_id, MAX_TITLE)


def xmltv_time(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y%m%d%H%M%S +0000")


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
    tv = ET.Element("tv", {"generator-info-name": "webtv-dagster",
                           "source-info-name": xml_text(channel.title, MAX_TITLE)})  # fmt: skip
    element = ET.SubElement(tv, "channel", {"id": channel_id(channel)})
    ET.SubElement(element, "display-name", {"lang": "en"}).text = xml_text(channel.title, 200)
    for clip in planned_air(state, playlist, now):
        programme = ET.SubElement(tv, "programme", {
            "start": xmltv_time(clip.starts_at), "stop": xmltv_time(clip.stops_at),
            "channel": channel_id(channel),
        })  # fmt: skip
        ET.SubElement(programme, "title", {"lang": "en"}).text = programme_title(clip, channel)
        desc = xml_text(clip.prompt, MAX_DESC)
        if clip.requested_by:
            desc = f"{desc} (Requested by {xml_text(clip.requested_by, 40)}, a viewer.)".strip()
        if desc:  # XMLTV refuses an empty description
            ET.SubElement(programme, "desc", {"lang": "en"}).text = desc
        ET.SubElement(programme, "category", {"lang": "en"}).text = "AI-generated"
        if clip.requested_by:
            ET.SubElement(programme, "keyword", {"lang": "en"}).text = "viewer request"
        length = ET.SubElement(programme, "length", {"units": "seconds"})
        length.text = str(round(clip.duration_seconds))
        ET.SubElement(programme, "episode-num", {"system": "webtv-clip"}).text = clip.clip_id
    ET.indent(tv)
    body = ET.tostring(tv, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
            + body + "\n").encode("utf-8")  # fmt: skip
