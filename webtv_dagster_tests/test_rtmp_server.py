"""The generated nginx-rtmp server: publish, subscribe, HLS; refused when its ports are taken."""

import subprocess
import time
import urllib.request

import pytest

from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.rtmp_server import RtmpServerError, start_rtmp_server


def test_a_published_stream_reaches_subscribers_and_hls(rtmp_server, tmp_path):
    recording = tmp_path / "recorded.flv"
    subscriber = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", rtmp_server.publish_url("test-llamas"),
         "-c", "copy", "-t", "5", str(recording)],
    )  # fmt: skip
    time.sleep(0.5)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=24",
         "-f", "lavfi", "-i", "sine=f=440:r=48000", "-t", "6", "-c:v", "libx264", "-preset",
         "ultrafast", "-g", "48", "-c:a", "aac", "-f", "flv",
         rtmp_server.publish_url("test-llamas")],
        check=True, timeout=60,
    )  # fmt: skip
    subscriber.wait(timeout=30)
    info = probe(recording)
    assert info.video is not None and info.audio is not None
    assert info.duration > 4.5
    playlist = urllib.request.urlopen(rtmp_server.hls_url("test-llamas"), timeout=5).read()
    segments = [line for line in playlist.decode().splitlines() if line.endswith(".ts")]
    assert len(segments) >= 2
    segment_url = rtmp_server.hls_url("test-llamas").rsplit("/", 1)[0] + "/" + segments[0]
    assert len(urllib.request.urlopen(segment_url, timeout=5).read()) > 10_000


def test_ports_in_use_are_refused_clearly(rtmp_server, tmp_path):
    with pytest.raises(RtmpServerError, match="ports .* are in use"):
        start_rtmp_server(
            tmp_path / "again", {"x": "X"}, rtmp_server.rtmp_port, rtmp_server.http_port, tmp_path
        )
