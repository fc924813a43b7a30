"""The programme guide as XMLTV: validated against the XMLTV DTD by lxml and by the reference
tools of the XMLTV project (Debian's xmltv-util: `tv_validate_file` checks the DTD and XMLTV's
own rules; `tv_to_text` and `tv_grep` read it with the XMLTV library as guide software does),
also with hostile text, and served through the real nginx."""

import os
import shutil
import subprocess
import urllib.request
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from webtv_dagster.audience.xmltv import channel_xmltv, xml_text
from webtv_dagster.playout.playlist import PLAYLIST_JSON, Playlist, PlaylistEntry
from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, ScheduledClip

DTD = "/usr/share/xmltv/xmltv.dtd"  # Debian's copy: the tools would fetch it from the web
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
SECONDS = 32.0  # the longest clip: the guide's minutes move from one clip to the next
SETUP = "run scripts/setup --for-tests"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (Debian xmltv-util) is required: {SETUP}")
    return path


def run_tool(*command: str) -> subprocess.CompletedProcess:
    """An XMLTV tool run in UTC (tv_to_text writes times as the document gives them, but the
    tools read dates given without a zone as local)."""
    return subprocess.run(
        [tool(command[0]), *command[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=60,
    )


def dtd_errors(document: bytes) -> list[str]:
    """What lxml finds wrong with the document against the XMLTV DTD (empty: valid)."""
    try:
        from lxml import etree
    except ImportError:
        pytest.fail(f"lxml (the test extra of pyproject.toml) is required: {SETUP}")
    if not os.path.exists(DTD):
        pytest.fail(f"{DTD} (Debian xmltv-util) is required: {SETUP}")
    dtd = etree.DTD(DTD)
    if dtd.validate(etree.fromstring(document)):
        return []
    return [str(error) for error in dtd.error_log.filter_from_errors()]


def validate(document: bytes, tmp_path, empty: bool = False) -> str:
    """Validates with lxml and tv_validate_file and returns what tv_to_text reads of it. An
    `empty` guide may have (only) tv_validate_file's complaint that it lists no programme."""
    assert document.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n'
    )
    assert dtd_errors(document) == []
    path = tmp_path / "guide.xml"
    path.write_bytes(document)
    checked = run_tool("tv_validate_file", "--dtd-file", DTD, str(path))
    said = checked.stdout + checked.stderr
    if empty:
        assert (checked.returncode, said) == (1, "No programme entries found.\n1 error found.\n")
    else:
        assert checked.returncode == 0, said
    read = run_tool("tv_to_text", str(path))
    assert read.returncode == 0, read.stderr
    return read.stdout


def programmes(document: bytes) -> list[dict[str, str | None]]:
    return [
        {
            "clip": element.findtext("episode-num"),
            "start": element.get("start"),
            "stop": element.get("stop"),
            "title": element.findtext("title"),
            "desc": element.findtext("desc"),
            "keyword": element.findtext("keyword"),
        }
        for element in ET.fromstring(document).iter("programme")
    ]


def listed_by_tv_to_text(text: str) -> list[tuple[str, str, str]]:
    """The (start, stop, title) lines tv_to_text prints: `08:00--08:01<tab>title<tab>channel`."""
    lines = [line.split("\t") for line in text.splitlines() if "--" in line and "\t" in line]
    return [(*times.split("--"), title) for times, title, _channel in lines]


def hh_mm(xmltv_time: str) -> str:
    return f"{xmltv_time[8:10]}:{xmltv_time[10:12]}"


def xmltv_time(unix_seconds: float) -> str:
    """Written here, not imported, so that the module's own formatting is checked."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y%m%d%H%M%S +0000")


def entry(number: int, prompt: str, requested_by: str | None = None) -> PlaylistEntry:
    key = f"test-llamas-{number:06d}"
    return PlaylistEntry(
        clip_id=key,
        prompt=prompt,
        seed=number,
        duration_seconds=SECONDS,
        uri=f"s3://media/{key}",
        path=f"clips/{key}/broadcast.mp4",
        requested_by=requested_by,
    )


def on_air_state(channel, on_air_since: float) -> PlayoutState:
    """Clip 2 aired, clip 3 on air since `on_air_since`, clip 4 queued to go out 0.3 s after
    clip 3 ends (the publisher's pacing: not a gap a guide should show, even where the two
    times fall in different seconds)."""
    starts = {2: on_air_since - SECONDS, 3: on_air_since, 4: on_air_since + SECONDS + 0.3}
    schedule = [
        ScheduledClip(
            clip_id=f"test-llamas-{n:06d}",
            prompt=f"the llama, scheduled {n}",
            duration_seconds=SECONDS,
            starts_at=starts[n],
            stream_seconds=(n - 1) * SECONDS,
        )
        for n in (2, 3, 4)
    ]
    return PlayoutState(
        channel=channel.slug,
        title=channel.title,
        publisher_started_at=0,
        updated_at=NOW,
        aired_through=4,
        unplayed_seconds=3 * SECONDS,
        schedule=schedule,
        up_next=[],
    )


def test_the_guide_chains_the_schedule_and_the_playlist_and_validates(llama_channel, tmp_path):
    detail = llama_channel.recurring_details[0]
    playlist = Playlist(
        channel=llama_channel.slug,
        title=llama_channel.title,
        entries=[
            entry(
                n, f"the llama, {detail}, baking bread number {n}, in a cosy bakery, slow pan left"
            )
            for n in range(1, 8)
        ],
    )
    playlist.entries[5] = entry(6, "the llama juggling lemons, slow pan left", "Zoë")
    on_air_since = NOW - 10.1  # stops at 08:00:21.9; clip 4 starts at 08:00:22.2
    document = channel_xmltv(
        llama_channel, on_air_state(llama_channel, on_air_since), playlist, NOW
    )
    text = validate(document, tmp_path)

    listed = programmes(document)
    # On air (3), queued (4), then the playlist's unaired clips 5, 6, 7 back to back; the aired
    # clips (1, and 2 of the schedule) are not listed.
    assert [p["clip"] for p in listed] == [f"test-llamas-{n:06d}" for n in range(3, 8)]
    assert listed[0]["start"] == xmltv_time(on_air_since) == "20270115075949 +0000"
    # Each programme starts where the one before it stops, to the second: no overlap, no gap
    # (the 0.3 s before clip 4 is pacing, not a gap).
    assert [p["start"] for p in listed[1:]] == [p["stop"] for p in listed[:-1]]
    assert all(p["start"] < p["stop"] for p in listed)
    assert listed[-1]["stop"] == xmltv_time(on_air_since + 5 * SECONDS + 0.3)
    assert listed[1]["title"] == "the llama, scheduled 4"  # from the state
    assert listed[2]["title"] == "the llama, baking bread number 5, in a cosy bakery"  # no detail
    assert detail in listed[2]["desc"] and listed[2]["desc"].endswith("slow pan left")
    assert (
        listed[3]["desc"]
        == "the llama juggling lemons, slow pan left (Requested by Zoë, a viewer.)"
    )
    assert listed[3]["keyword"] == "viewer request" and listed[2]["keyword"] is None

    # The XMLTV library reads every programme with its title and times.
    assert listed_by_tv_to_text(text) == [
        (hh_mm(p["start"]), hh_mm(p["stop"]), p["title"]) for p in listed
    ]
    assert listed_by_tv_to_text(text)[0][:2] == ("07:59", "08:00")
    # tv_grep reads the times as times: from clip 5's start on, clip 4 has stopped (a programme
    # airs up to, not including, its stop).
    path = tmp_path / "guide.xml"
    later = run_tool("tv_grep", "--on-after", listed[2]["start"], str(path))
    assert later.returncode == 0, later.stderr
    assert [p["clip"] for p in programmes(later.stdout.encode())] == [
        f"test-llamas-{n:06d}" for n in (5, 6, 7)
    ]


def test_a_channel_that_never_aired_is_planned_from_now(llama_channel, tmp_path):
    playlist = Playlist(
        channel=llama_channel.slug,
        title=llama_channel.title,
        entries=[entry(1, "prompt one"), entry(2, "prompt two")],
    )
    document = channel_xmltv(llama_channel, None, playlist, NOW + 0.5)
    text = validate(document, tmp_path)
    listed = programmes(document)
    assert [(p["start"], p["stop"], p["title"]) for p in listed] == [
        ("20270115080000 +0000", "20270115080032 +0000", "prompt one"),
        ("20270115080032 +0000", "20270115080104 +0000", "prompt two"),
    ]
    assert listed_by_tv_to_text(text) == [
        ("08:00", "08:00", "prompt one"),
        ("08:00", "08:01", "prompt two"),
    ]
    # Nothing to plan: the channel alone, valid but for the missing programmes.
    empty = channel_xmltv(llama_channel, None, None, NOW)
    validate(empty, tmp_path, empty=True)
    assert programmes(empty) == []
    assert ET.fromstring(empty).findtext("channel/display-name") == llama_channel.title
    assert ET.fromstring(empty).find("channel").get("id") == "test-llamas.webtv"


def test_without_a_playlist_the_guide_lists_the_schedule(llama_channel, tmp_path):
    state = on_air_state(llama_channel, NOW - 1)
    document = channel_xmltv(llama_channel, state, None, NOW)
    text = validate(document, tmp_path)
    listed = programmes(document)
    assert [p["title"] for p in listed] == ["the llama, scheduled 3", "the llama, scheduled 4"]
    assert listed[0]["stop"] == listed[1]["start"]
    assert [title for *_, title in listed_by_tv_to_text(text)] == [p["title"] for p in listed]
    # A playout that stopped long ago plans nothing from its old schedule.
    stale = channel_xmltv(llama_channel, state, None, NOW + 3_600)
    validate(stale, tmp_path, empty=True)


def test_hostile_text_leaves_the_guide_valid(llama_channel, tmp_path):
    hostile = (
        "<script>alert(1)</script> & ]]> \x00\x07\x1b[31m\x85\x9b \ud800 \ufffe 🦙 "
        + "very long " * 1_000
    )
    assert len(hostile) > 10_000
    playlist = Playlist(
        channel=llama_channel.slug,
        title=llama_channel.title,
        entries=[
            entry(1, hostile, requested_by='<b onmouseover="x">Mallory</b>\x0c ]]> &amp;'),
            entry(2, "x" * 10_000, requested_by="\x00\x01 \t"),  # a name of nothing printable
            entry(3, "", requested_by="Eve" * 100),
            entry(4, "\x00\x1f,\x7f,\x08"),
            entry(5, "\x00 \x0b"),  # no description at all: XMLTV refuses an empty one
        ],
    )
    document = channel_xmltv(llama_channel, None, playlist, NOW)
    text = validate(document, tmp_path)
    assert b"<script>" not in document and b"&lt;script&gt;" in document
    assert b"]]&gt;" in document and b"]]>" not in document
    for forbidden in ("\x00", "\x07", "\x1b", "\x85", "\x9b", "\ufffe"):
        assert forbidden.encode() not in document
    assert "🦙".encode() in document
    assert len(document) < 6_000  # 20 kB of prompts cut to bounded titles and descriptions

    listed = programmes(document)
    assert [len(p["title"]) <= 80 and len(p["desc"] or "") <= 1_100 for p in listed] == [True] * 5
    assert listed[0]["title"].startswith("<script>alert(1)</script> & ]]> [31m 🦙 very long")
    assert listed[0]["desc"].endswith(
        '(Requested by <b onmouseover="x">Mallory</b> ]]> &amp;, a viewer.)'
    )  # text, as written: markup is escaped, not interpreted
    assert listed[1]["desc"] == "x" * 999 + "…" and listed[1]["keyword"] is None
    assert listed[2]["desc"] == f"(Requested by {'Eve' * 13}…, a viewer.)"
    assert listed[3]["title"] == "test-llamas-000004" and listed[3]["desc"] == ",,"
    assert listed[4]["title"] == "test-llamas-000005" and listed[4]["desc"] is None
    assert [title for *_, title in listed_by_tv_to_text(text)] == [p["title"] for p in listed]


def test_xml_text_cuts_at_a_word():
    assert xml_text("one two three four", 12) == "one two…"
    assert xml_text("a\x01b\tc\x9fd", 10) == "ab cd"
    assert xml_text("x" * 20, 10) == "x" * 9 + "…"


def test_the_guide_is_served_by_the_viewers_web_server(rtmp_server, media_store, tmp_path):
    from .test_viewer_service import ViewerServiceProcess, requests_channels_file

    data_dir = rtmp_server.root.parent / "data"
    # What the playout keeps of the playlist: the service reads it, not S3.
    copy = PlayoutFolder.of(data_dir, "test-llamas").path / PLAYLIST_JSON
    copy.parent.mkdir(parents=True)
    copy.write_text(
        Playlist(
            channel="test-llamas",
            title="t",
            entries=[entry(1, "the llama, rowing, at dawn"), entry(2, "the llama, skiing")],
        ).model_dump_json()
    )
    service = ViewerServiceProcess(
        data_dir, requests_channels_file(tmp_path / "c.yaml"), media_store
    ).start()
    try:
        url = f"http://127.0.0.1:{rtmp_server.http_port}/xmltv/test-llamas.xml"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
            assert "the llama, skiing" in validate(answer.read(), tmp_path)
        missing = f"http://127.0.0.1:{rtmp_server.http_port}/xmltv/nope.xml"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(missing, timeout=10)
        assert refused.value.code == 404
    finally:
        service.stop()
