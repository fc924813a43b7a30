"""Previews from the viewer service on a real SeaweedFS: it serves a clip's stage previews and no
other object, directly on its Unix socket and through the viewer's nginx; previews go with their
clip."""

import logging
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from webtv_dagster import clips
from webtv_dagster.audience.viewer_service import ViewerService, ViewerServiceError, ViewerSite
from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.preview import contact_sheet_jpeg
from webtv_dagster.production.previews import PublicUrlError, public_base_url
from webtv_dagster.production.retention import remove_clip, stored_clips
from webtv_dagster.public_site import UnixHTTPConnection, viewer_service_socket
from webtv_dagster.settings import Settings
from webtv_dagster.stack.processes import wait_until_serving
from webtv_dagster.stack.programs import webtv_command

from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS

CLIP = ClipId(channel="test-llamas", number=1)
PREVIEW = clips.preview_name(clips.BROADCAST_CLIP)
PREVIEW_PATH = f"/previews/test-llamas/{CLIP.key}/{PREVIEW}"


@pytest.fixture(scope="module")
def contact_sheet(tmp_path_factory) -> bytes:
    video = tmp_path_factory.mktemp("preview") / "clip.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=24",
            "-frames:v",
            "48",
            "-g",
            "12",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(video),
        ],
        "test video",
    )
    return contact_sheet_jpeg(video, probe(video, keyframes=True).video)


@pytest.fixture
def stored_clip(media_store, contact_sheet):
    """A clip with a prompt, its broadcast media and the broadcast preview in the bucket."""
    media_store.put_json(CLIP.object_key(clips.PROMPT), {"prompt": "a secret prompt"})
    media_store.put_bytes(CLIP.object_key(clips.BROADCAST_CLIP), b"not really mp4", "video/mp4")
    media_store.put_bytes(CLIP.object_key(PREVIEW), contact_sheet, "image/jpeg")
    return media_store


def serving(socket_path, store):
    """Starts a viewer service on `socket_path` in a thread; returns it (shut it down after)."""
    site = ViewerSite(store, load_channels(TEST_CHANNELS), socket_path.parent / "data")
    server = ViewerService(socket_path, site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def preview_server(tmp_path, stored_clip):
    server = serving(tmp_path / "viewer-service.sock", stored_clip)
    yield server
    server.shutdown()
    server.server_close()


def get(socket_path, path, headers=None):
    connection = UnixHTTPConnection(socket_path)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_a_preview_is_served_with_its_type_and_cache_headers(preview_server, contact_sheet):
    response, body = get(preview_server.socket_path, PREVIEW_PATH)
    assert response.status == 200
    assert response.getheader("Content-Type") == "image/jpeg"
    assert body == contact_sheet and body.startswith(b"\xff\xd8\xff")
    assert response.getheader("Cache-Control") == "public, max-age=60"
    etag = response.getheader("ETag")
    assert etag
    again, body = get(preview_server.socket_path, PREVIEW_PATH, {"If-None-Match": etag})
    assert again.status == 304 and body == b""


@pytest.mark.parametrize(
    "path",
    [
        f"/previews/test-llamas/{CLIP.key}/raw.preview.jpg",  # a preview not made (yet)
        f"/previews/test-llamas/{CLIP.key}/{clips.PROMPT}",  # objects that are not previews
        f"/previews/test-llamas/{CLIP.key}/{clips.BROADCAST_CLIP}",
        f"/previews/test-llamas/{CLIP.key}/../{CLIP.key}/{clips.PROMPT}",
        f"/previews/test-llamas/{CLIP.key}/..%2f{clips.PROMPT}",
        f"/previews/../channels/test-llamas/clips/{CLIP.key}/{PREVIEW}",
        f"/previews/test-ocean/{CLIP.key}/{PREVIEW}",  # another channel's slug
        f"/previews/test-llamas/{CLIP.key}%0a/{PREVIEW}",
        f"/previews/test-llamas/{CLIP.key}/{PREVIEW}/",
        f"/channels/test-llamas/clips/{CLIP.key}/{PREVIEW}",
        "/",
    ],
)
def test_anything_but_a_stored_preview_is_not_found(preview_server, path, caplog):
    caplog.set_level(logging.DEBUG, logger="webtv_dagster.production.previews")
    response, body = get(preview_server.socket_path, path)
    assert response.status == 404
    # Neither the answer nor the log names the bucket, an object key or a credential.
    for said in (body.decode(), caplog.text):
        assert "secret" not in said and "channels/test-llamas/clips" not in said
        assert preview_server.site.store.bucket not in said and ACCESS_KEY not in said


def test_a_failing_store_answers_502_without_naming_the_object(tmp_path, caplog):
    from webtv_dagster.media_store import MediaStore

    caplog.set_level(logging.DEBUG, logger="webtv_dagster.production.previews")
    closed = MediaStore("media", "http://127.0.0.1:9", "us-east-1", ACCESS_KEY, SECRET_KEY)
    server = serving(tmp_path / "viewer-service.sock", closed)
    try:
        response, body = get(server.socket_path, PREVIEW_PATH)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status == 502
    assert "channels/" not in body.decode() + caplog.text
    assert PREVIEW_PATH in caplog.text  # the log says which preview failed, by its URL path


def test_a_second_server_on_a_served_socket_is_refused(preview_server):
    with pytest.raises(ViewerServiceError, match="served already"):
        ViewerService(preview_server.socket_path, preview_server.site)


def test_nginx_serves_previews_through_the_service(rtmp_server, stored_clip, contact_sheet):
    # The rtmp_server fixture serves the data folder tmp_path / "data".
    socket_path = viewer_service_socket(rtmp_server.root.parent / "data")
    server = serving(socket_path, stored_clip)
    base = f"http://127.0.0.1:{rtmp_server.http_port}"
    try:
        with urllib.request.urlopen(base + PREVIEW_PATH, timeout=5) as response:
            assert response.headers["Content-Type"] == "image/jpeg"
            assert response.read() == contact_sheet
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/previews/test-llamas/{CLIP.key}/prompt.json")
        assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_previews_go_with_their_clip(stored_clip):
    (clip,) = stored_clips(stored_clip, "test-llamas")
    assert CLIP.object_key(PREVIEW) in clip.keys
    remove_clip(stored_clip, clip)
    assert stored_clip.list_keys(f"channels/test-llamas/clips/{CLIP.key}/") == []


def test_webtv_viewer_service_serves_until_sigterm_then_removes_its_socket(tmp_path, stored_clip):
    socket_path = tmp_path / "viewer-service.sock"
    environment = {
        **os.environ,
        "WEBTV_S3_ENDPOINT_URL": stored_clip.endpoint,
        "WEBTV_S3_BUCKET": stored_clip.bucket,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    service = subprocess.Popen(
        webtv_command("viewer-service", "--socket", str(socket_path)),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until_serving(socket_path, timeout=30)
        response, body = get(socket_path, PREVIEW_PATH)
        assert response.status == 200 and body.startswith(b"\xff\xd8\xff")
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=10)
    assert service.returncode == 0, output
    assert not socket_path.exists()
    assert SECRET_KEY not in output and "channels/" not in output


def test_the_public_url_defaults_to_the_viewer_and_carries_no_credentials():
    assert public_base_url(Settings(hls_port=8090)) == ("http://127.0.0.1:8090")
    settings = Settings(public_url="https://tv.example.org/")
    assert public_base_url(settings) == "https://tv.example.org"
    for refused in ("https://ops:pw@tv.example.org", "ftp://tv.example.org", "tv.example.org"):
        with pytest.raises(PublicUrlError, match="WEBTV_PUBLIC_URL"):
            public_base_url(Settings(public_url=refused))
