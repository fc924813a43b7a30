"""The generated nginx-rtmp server: publish, subscribe, HLS; refused when its ports are taken."""

import contextlib
import os
import pwd
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.settings import Settings
from webtv_dagster.stack.nginx import mirrors_of
from webtv_dagster.stack.nginx_process import RtmpServerError
from webtv_dagster_tests.servers import free_port_block, start_rtmp_server

from .conftest import command_lines


def test_a_published_stream_reaches_subscribers_and_hls(rtmp_server, tmp_path):
    recording = tmp_path / "recorded.flv"
    subscriber = subprocess.Popen(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            rtmp_server.publish_url("test-llamas"),
            "-c",
            "copy",
            "-t",
            "5",
            str(recording),
        ],
    )
    time.sleep(0.5)
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=24",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=48000",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "48",
            "-c:a",
            "aac",
            "-f",
            "flv",
            rtmp_server.publish_url("test-llamas"),
        ],
        check=True,
        timeout=60,
    )
    subscriber.wait(timeout=30)
    info = probe(recording)
    assert info.video is not None and info.audio is not None
    assert info.duration > 4.5
    playlist = urllib.request.urlopen(rtmp_server.hls_url("test-llamas"), timeout=5).read()
    segments = [line for line in playlist.decode().splitlines() if line.endswith(".ts")]
    assert len(segments) >= 2
    segment_url = rtmp_server.hls_url("test-llamas").rsplit("/", 1)[0] + "/" + segments[0]
    with urllib.request.urlopen(segment_url, timeout=5) as segment:
        assert len(segment.read()) > 10_000
        # A fragment is cacheable (its name never comes back with other content); any site
        # may embed the player.
        assert segment.headers["Cache-Control"] == "public, max-age=3600, immutable"
        assert segment.headers["Access-Control-Allow-Origin"] == "*"
    with urllib.request.urlopen(rtmp_server.hls_url("test-llamas"), timeout=5) as listing:
        assert listing.headers["Cache-Control"] == "public, max-age=1"


def test_ports_in_use_are_refused_clearly(rtmp_server, tmp_path):
    with pytest.raises(RtmpServerError, match="ports .* are in use"):
        start_rtmp_server(
            tmp_path / "again", {"x": "X"}, rtmp_server.rtmp_port, rtmp_server.http_port, tmp_path
        )


def test_mirrors_are_pushed_by_nginx_with_their_keys_out_of_process_lists(tmp_path):
    """A channel's mirrors (a live one and a dead one) get the stream from nginx's `push`; the
    stream keys are only in files no other user can read, and the dead mirror costs the live
    one and the main stream nothing."""
    port = free_port_block(4)
    remote = start_rtmp_server(tmp_path / "remote", {"app": "Twitch"}, port + 2, port + 3, tmp_path)
    # The stand-in for Twitch is our own nginx, which takes the stream name "live" only.
    live_mirror = f"rtmp://127.0.0.1:{port + 2}/app/live?key=secret-key-123"
    dead_mirror = f"rtmp://127.0.0.1:{free_port_block(1)}/app/live?key=dead-key-456"
    ours = start_rtmp_server(
        tmp_path / "ours",
        {"test-llamas": "Llamas"},
        port,
        port + 1,
        tmp_path,
        mirrors={"test-llamas": [live_mirror, dead_mirror]},
    )
    try:
        recordings = {name: tmp_path / f"{name}.flv" for name in ("main", "mirror")}
        subscribers = [
            subprocess.Popen(
                [
                    "ffmpeg",
                    "-loglevel",
                    "error",
                    "-y",
                    "-i",
                    url,
                    "-c",
                    "copy",
                    "-t",
                    "4",
                    str(recordings[name]),
                ],
            )
            for name, url in [("main", ours.publish_url("test-llamas")), ("mirror", live_mirror)]
        ]
        time.sleep(0.5)
        publisher = subprocess.Popen(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=640x360:r=24",
                "-f",
                "lavfi",
                "-i",
                "sine=f=440:r=48000",
                "-t",
                "8",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "48",
                "-c:a",
                "aac",
                "-f",
                "flv",
                ours.publish_url("test-llamas"),
            ],
        )
        time.sleep(3)
        # Another local process publishing another stream in the channel's application would
        # be pushed to the mirrors too: it is refused.
        intruder = subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=64x64:r=8",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-f",
                "flv",
                ours.publish_url("test-llamas").rsplit("/", 1)[0] + "/intruder",
            ],
            capture_output=True,
            timeout=60,
        )
        assert intruder.returncode != 0
        # The subscriber at the mirror's end is the test's stand-in for Twitch's viewers.
        processes = command_lines(but={subscribers[1].pid})
        publisher.wait(timeout=60)
        for subscriber in subscribers:
            subscriber.wait(timeout=30)
        for recording in recordings.values():
            info = probe(recording)
            assert info.video is not None and info.duration > 3.5
        assert "secret-key-123" not in processes and "dead-key-456" not in processes
        for private in ["nginx.conf", "error.log"]:
            assert (tmp_path / "ours" / private).stat().st_mode & 0o077 == 0
        assert "dead-key-456" in (tmp_path / "ours" / "nginx.conf").read_text()
    finally:
        ours.stop()
        remote.stop()


@pytest.mark.parametrize(
    "entry",
    [
        "rtmps://live.example/app/s3cr3t",
        "rtmp://host/app/s3cr3t;\n  allow publish all",
        "rtmp://host/app/s3cr3t }",
        "http://host/app/s3cr3t",
    ],
)
def test_a_mirror_url_that_nginx_cannot_push_is_refused_without_its_key(entry, monkeypatch):
    monkeypatch.setenv("WEBTV_MIRRORS_TEST_LLAMAS", f"rtmp://ok.example/app/k1, {entry}")
    with pytest.raises(RtmpServerError, match="WEBTV_MIRRORS_TEST_LLAMAS: entry 2 is not") as e:
        mirrors_of(Settings.from_env(), ["test-llamas"])
    assert "s3cr3t" not in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root master hands its workers over")
def test_started_as_root_the_workers_run_as_nobody_and_still_serve(tmp_path):
    """A data folder behind a private folder (pytest's own, mode 0700, like a checkout under
    /root): nginx's files go to a public folder of their own, its workers drop root, and they
    still write HLS and serve the viewer, hls.js and the playout states."""
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, write_state
    from webtv_dagster.public_site import public_folder

    data_dir = tmp_path / "data"
    root = public_folder(data_dir)
    assert not root.is_relative_to(tmp_path)
    try:
        port = free_port_block(2)
        server = start_rtmp_server(root, {"test-llamas": "Llamas"}, port, port + 1, data_dir)
        try:
            workers = []
            for path in Path("/proc").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError):  # a process of the machine that just ended
                    if path.read_text().rsplit(")", 1)[1].split()[1] == str(server.process.pid):
                        workers.append(int(path.parent.name))
            assert workers
            for pid in workers:
                uid_line = next(
                    line
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
                assert uid_line.split()[1] == str(pwd.getpwnam("nobody").pw_uid)
            PlayoutFolder.of(data_dir, "test-llamas").path.mkdir(parents=True)  # its own
            write_state(
                data_dir,
                PlayoutState(
                    channel="test-llamas",
                    title="Llamas",
                    publisher_started_at=1.0,
                    updated_at=1.0,
                    unplayed_seconds=0,
                    schedule=[],
                    up_next=[],
                ),
            )
            subprocess.run(
                [
                    "ffmpeg",
                    "-loglevel",
                    "error",
                    "-re",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=s=320x180:r=24",
                    "-t",
                    "5",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-g",
                    "24",
                    "-f",
                    "flv",
                    server.publish_url("test-llamas"),
                ],
                check=True,
                timeout=60,
            )
            http = f"http://127.0.0.1:{port + 1}"
            playlist = urllib.request.urlopen(server.hls_url("test-llamas"), timeout=5).read()
            assert b".ts" in playlist
            state = urllib.request.urlopen(f"{http}/state/test-llamas.json", timeout=5).read()
            assert b'"channel": "test-llamas"' in state
            for page in ["/", "/viewer.js", "/vendor/hls.min.js"]:
                assert urllib.request.urlopen(http + page, timeout=5).status == 200, page
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_flood_of_idle_connections_from_one_address_leaves_others_watching(rtmp_server, tmp_path):
    """600 connections opened from one address, each beginning a request it never finishes,
    once took the viewer, HLS and the API down for everyone (512 worker connections, held for
    nginx's default 60 s): now a viewer from another address plays on through the flood, and
    nginx drops the flood within seconds."""
    import socket

    publisher = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=24"]
        + ["-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-g", "24", "-f", "flv"]
        + [rtmp_server.publish_url("test-llamas")]
    )
    playlist_url = rtmp_server.hls_url("test-llamas")

    hls = urllib.parse.urlsplit(playlist_url)

    def get(sock: socket.socket, path: str) -> bytes:
        """One GET on a kept-alive connection: the body of a 200 answer."""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: tv\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
        return body

    def fetch_as_another_viewer() -> float:
        """Seconds to read the playlist and its newest fragment from 127.0.0.2."""
        started = time.monotonic()
        viewer = ("127.0.0.2", 0)
        with socket.create_connection((hls.hostname, hls.port), 5, viewer) as sock:
            listing = get(sock, hls.path).decode().splitlines()
            newest = [line for line in listing if line.endswith(".ts")][-1]
            get(sock, hls.path.rsplit("/", 1)[0] + "/" + newest)
        return time.monotonic() - started

    flood: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                fetch_as_another_viewer()
                break
            except (AssertionError, IndexError, OSError):
                assert time.monotonic() < deadline, "no HLS within 30 s"
                time.sleep(0.5)
        for _ in range(640):  # each begins a request and never finishes its header
            sock = socket.create_connection((hls.hostname, hls.port), timeout=5)
            sock.sendall(b"GET /channels.json HTTP/1.1\r\nHo")
            flood.append(sock)
        flooded_at = time.monotonic()
        took = []
        while time.monotonic() - flooded_at < 8:
            took.append(fetch_as_another_viewer())
            time.sleep(0.5)
        assert max(took) < 2.0, took
        # nginx dropped the flood by itself (5 s for a request's header).
        for sock in flood:
            sock.settimeout(max(0.1, flooded_at + 10 - time.monotonic()))
        closed = 0
        for sock in flood:
            try:
                sock.recv(1024)  # the end of the connection (or an error answer before it)
                closed += 1
            except ConnectionResetError:  # reset_timedout_connection
                closed += 1
            except TimeoutError:
                pass
        assert closed == len(flood), f"{len(flood) - closed} idle connections still open"
    finally:
        for sock in flood:
            sock.close()
        publisher.kill()
        publisher.wait()
