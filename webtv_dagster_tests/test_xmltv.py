"""The programme guide as XMLTV: validated by the reference tools of the XMLTV project
(Debian's xmltv-util: `tv_validate_file` checks the DTD and XMLTV's own rules, `tv_to_text`
reads it with the XMLTV library), also with hostile text, and served through the real nginx."""

import shutil
import subprocess
import urllib.request
from datetime import UTC, datetime

import pytest

from webtv_dagster.playlist import PLAYLIST_JSON, Playlist, PlaylistEntry
from webtv_dagster.playout.state import PlayoutState, ScheduledClip, playout_folder
from webtv_dagster.xmltv import channel_xmltv, xml_text

DTD = "/usr/share/xmltv/xmltv.dtd"  # Debian's copy: the tools would fetch it from the web
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
SECONDS = 64 / 24


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (Debian xmltv-util) is required: run scripts/setup --for-tests")
    return path


def validate(document: bytes, tmp_path, empty: bool = False) -> str:
    """Validates with tv_validate_file and returns what tv_to_text reads of it. An `empty`
    guide may have (only) the complaint that it lists no programme."""
    path = tmp_path / "guide.xml"
    path.write_bytes(document)
    checked = subprocess.run([tool("tv_validate_file"), "--dtd-file", DTD, str(path)],
                             capture_output=True, text=True)  # fmt: skip
    said = checked.stdout + checked.stderr
    if empty:
        assert said == "No programme entries found.\n1 error found.\n", said
    else:
        assert checked.returncode == 0, said
    read = subprocess.run([tool("tv_to_text"), str(path)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return read.stdout


def entry(number: int, prompt: str, requested_by: str | None = None) -> PlaylistEntry:
    key = f"test-llamas-{number:06d}"
    return PlaylistEntry(clip_id=key, prompt=prompt, seed=number, duration_seconds=SECONDS,
                         uri=f"s3://media/{key}", path=f"clips/{key}/broadcast.mp4",
                         requested_by=requested_by)  # fmt: skip


def on_air_state(channel, starts_at: float) -> PlayoutState:
    """Clip 3 on air since `starts_at`, clip 4 queued after it."""
    schedule = [
        ScheduledClip(clip_id=f"test-llamas-{n:06d}", prompt=f"prompt {n}",
                      duration_seconds=SECONDS, starts_at=starts_at + (n - 3) * SECONDS,
                      stream_seconds=(n - 1) * SECONDS)  # fmt: skip
        for n in (2, 3, 4)
    ]
    return PlayoutState(channel=channel.slug, title=channel.title, publisher_started_at=0,
                        updated_at=NOW, aired_through=4, unplayed_seconds=3 * SECONDS,
                        schedule=schedule, up_next=[])  # fmt: skip


def test_the_guide_chains_the_schedule_and_the_playlist_and_validates(llama_channel, tmp_path):
    detail = llama_channel.recurring_details[0]
    playlist = Playlist(channel=llama_channel.slug, title=llama_channel.title, entries=[
        entry(n, f"the llama, {detail}, baking bread number {n}, in a cosy bakery, slow pan left")
        for n in range(1, 8)
    ])  # fmt: skip
    playlist.entries[5] = entry(6, "the llama juggling lemons, slow pan left", "Zoë")
    document = channel_xmltv(llama_channel, on_air_state(llama_channel, NOW - 1), playlist, NOW)
    text = validate(document, tmp_path)
    # On air (3), queued (4), then the playlist's unaired clips 5, 6, 7 back to back; aired
    # clips (1, 2) are not listed.
    import xml.etree.ElementTree as ET

    root = ET.fromstring(document.split(b"\n", 2)[2])
    programmes = root.findall("programme")
    clips = [p.find("episode-num").text for p in programmes]
    assert clips == [f"test-llamas-{n:06d}" for n in range(3, 8)]
    starts = [datetime.strptime(p.get("start"), "%Y%m%d%H%M%S %z").timestamp() for p in programmes]
    stops = [datetime.strptime(p.get("stop"), "%Y%m%d%H%M%S %z").timestamp() for p in programmes]
    assert starts[0] == int(NOW - 1) and all(
        abs(stop - start) <= 1 for stop, start in zip(stops, starts[1:], strict=False)
    )  # no gap, no overlap (XMLTV times are whole seconds)
    titles = [p.find("title").text for p in programmes]
    assert titles[2] == "the llama, baking bread number 5, in a cosy bakery"  # no details
    requested = programmes[3]
    assert "Requested by Zoë" in requested.find("desc").text
    assert requested.find("keyword").text == "viewer request"
    # The XMLTV library reads every programme with its title and time.
    assert text.count("\n") >= 5 and "the llama juggling lemons" in text
    assert datetime.fromtimestamp(NOW, UTC).strftime("%H:%M") in text


def test_a_channel_never_aired_or_without_a_playlist_still_has_a_valid_guide(
    llama_channel, tmp_path
):
    playlist = Playlist(channel=llama_channel.slug, title=llama_channel.title,
                        entries=[entry(1, "prompt one"), entry(2, "prompt two")])  # fmt: skip
    never_aired = channel_xmltv(llama_channel, None, playlist, NOW)
    validate(never_aired, tmp_path)
    assert never_aired.count(b"<programme ") == 2
    assert b'start="20270115080000 +0000"' in never_aired  # planned from now
    empty = channel_xmltv(llama_channel, None, None, NOW)
    validate(empty, tmp_path, empty=True)
    assert b"<programme" not in empty and b"<display-name" in empty


def test_hostile_text_leaves_the_guide_valid(llama_channel, tmp_path):
    hostile = ("<script>alert(1)</script> & ]]> \x00\x07\x1b[31m \ud800 \ufffe 🦙 "
               + "very long " * 1_000)  # fmt: skip
    playlist = Playlist(channel=llama_channel.slug, title=llama_channel.title, entries=[
        entry(1, hostile, requested_by='<b onmouseover="x">Mallory</b>\x0c'),
        entry(2, "", requested_by=None),
    ])  # fmt: skip
    document = channel_xmltv(llama_channel, None, playlist, NOW)
    text = validate(document, tmp_path)
    assert b"<script>" not in document and b"&lt;script&gt;" in document
    assert b"\x00" not in document and "🦙".encode() in document
    assert len(document) < 10_000  # a 10 kB prompt is cut to a bounded description
    assert "very long very long" in text  # the library reads the title
    assert b"Requested by &lt;b onmouseover=\"x\"&gt;Mallory&lt;/b&gt;" in document


def test_xml_text_cuts_at_a_word():
    assert xml_text("one two three four", 12) == "one two…"
    assert xml_text("a\x01b\tc", 10) == "ab c"


def test_the_guide_is_served_by_the_viewers_web_server(rtmp_server, media_store, tmp_path):
    from .test_viewer_service import ViewerServiceProcess, requests_channels_file

    data_dir = rtmp_server.root.parent / "data"
    # What the playout keeps of the playlist: the service reads it, not S3.
    copy = playout_folder(data_dir, "test-llamas") / PLAYLIST_JSON
    copy.parent.mkdir(parents=True)
    copy.write_text(Playlist(channel="test-llamas", title="t", entries=[
        entry(1, "the llama, rowing, at dawn"), entry(2, "the llama, skiing")]).model_dump_json())
    service = ViewerServiceProcess(data_dir, requests_channels_file(tmp_path / "c.yaml"),
                                   media_store).start()  # fmt: skip
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
