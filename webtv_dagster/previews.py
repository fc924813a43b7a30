"""Stage previews by URL: each clip's previews (contact sheets, the music's waveform) are objects
beside the clip in the bucket (clips.preview_name), so retention removes them with the clip; the
Dagster UI links them as `<public URL>/previews/<slug>/<clip key>/<name>`, and this service,
behind the viewer's nginx (which cannot sign S3 requests), answers those paths from the bucket.

It listens on a Unix socket in the data folder and serves nothing but preview objects: any other
path, name or clip key is a 404, as is a preview not (or no longer) in the bucket. Neither its
answers nor its log ever name an object key or a credential.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from webtv_dagster import clips
from webtv_dagster.clips import CLIP_KEY_PATTERN, ClipId
from webtv_dagster.processes import unix_socket_is_served
from webtv_dagster.rtmp_server import PREVIEWS_PATH
from webtv_dagster.settings import Settings
from webtv_dagster.storage import MediaStore, StorageError

# A rerun replaces a clip's previews: browsers keep one a minute, then ask again (ETag).
CACHE_CONTROL = "public, max-age=60"
log = logging.getLogger(__name__)


class PreviewServiceError(RuntimeError):
    """The preview service cannot start or its public URL is unusable; the message says why."""


def public_base_url(settings: Settings) -> str:
    """The viewer's address as an operator's browser reaches it (WEBTV_PUBLIC_URL, default the
    loopback viewer), without a trailing slash; one with credentials is refused, since the
    links it makes are stored in Dagster's event log for anyone with the UI to read."""
    url = (settings.public_url or f"http://127.0.0.1:{settings.hls_port}").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise PreviewServiceError(f"WEBTV_PUBLIC_URL {url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise PreviewServiceError(
            "WEBTV_PUBLIC_URL must be a plain address (no user, password, query or fragment): "
            "preview links are shown to everyone who can open the Dagster UI"
        )
    return url


def preview_markdown(base_url: str, clip: ClipId, name: str) -> str:
    """The Markdown image of a clip's preview, by URL (a few dozen bytes of metadata)."""
    alt = "waveform" if clips.preview_content_type(name) == "image/png" else "frames"
    return f"![{alt}]({base_url}{PREVIEWS_PATH}{clip.channel}/{clip.key}/{name})"


def preview_object_key(path: str) -> str | None:
    """The object key of the preview a request path names, or None when it names anything else
    (another object of the clip, another path, an encoded or relative name)."""
    if not path.startswith(PREVIEWS_PATH):
        return None
    parts = path[len(PREVIEWS_PATH) :].split("/")
    if len(parts) != 3:
        return None
    slug, clip_key, name = parts
    match = CLIP_KEY_PATTERN.fullmatch(clip_key)
    if match is None or match["slug"] != slug or name not in clips.PREVIEW_NAMES:
        return None
    return ClipId.parse(clip_key).object_key(name)


class PreviewHandler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "webtv-previews"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        path = urlsplit(self.path).path
        key = preview_object_key(path)
        if key is None:
            self._plain(404, "not a preview\n")
            return
        try:
            with self.server.store.open_object(key) as stored:
                if stored.etag and self.headers.get("If-None-Match") == stored.etag:
                    self.send_response(304)
                    self._cache_headers(stored.etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", clips.preview_content_type(key))
                self.send_header("Content-Length", str(stored.size_bytes))
                self._cache_headers(stored.etag)
                self.end_headers()
                if with_body:
                    self._stream(key, path, stored.chunks)
        except FileNotFoundError:
            self._plain(404, "no such preview\n")
        except StorageError as error:
            self._log_storage_error(key, path, error)
            self._plain(502, "the media store did not answer\n")

    def _stream(self, key: str, path: str, chunks: Iterator[bytes]) -> None:
        """Sends the body; a failure half-way can only close the connection (the status is
        sent), which tells the client the image is incomplete."""
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
        except StorageError as error:
            self._log_storage_error(key, path, error)
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the browser went away

    def _log_storage_error(self, key: str, path: str, error: StorageError) -> None:
        # Its message says what to check, naming the object: the log names its URL path.
        log.error("%s", str(error).replace(self.server.store.uri(key), path))

    def _cache_headers(self, etag: str) -> None:
        self.send_header("Cache-Control", CACHE_CONTROL)
        self.send_header("X-Content-Type-Options", "nosniff")
        if etag:
            self.send_header("ETag", etag)

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def version_string(self) -> str:
        return self.server_version

    def address_string(self) -> str:
        return "nginx"  # a Unix socket's peer has no address

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per image is noise; failures are logged where they happen

    def log_message(self, format: str, *args) -> None:
        log.warning("%s", format % args)


class PreviewServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers preview requests on a Unix socket, a thread per connection."""

    daemon_threads = True

    def __init__(self, socket_path: Path, store: MediaStore):
        self.store = store
        self.socket_path = socket_path
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(socket_path)
        super().__init__(str(socket_path), PreviewHandler)
        # nginx's workers may run as another account (rtmp_server.worker_account); the socket
        # serves nothing its HTTP port does not serve to anyone.
        socket_path.chmod(0o666)

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def _remove_stale_socket(socket_path: Path) -> None:
    """Removes the socket a killed predecessor left; one that answers is another server's."""
    if not socket_path.exists():
        return
    if unix_socket_is_served(socket_path):
        raise PreviewServiceError(f"{socket_path} is served already (another `webtv previews`?)")
    socket_path.unlink()


def serve_previews(socket_path: Path, store: MediaStore) -> None:
    """Serves previews on `socket_path` until SIGINT or SIGTERM, then removes the socket."""
    server = PreviewServer(socket_path, store)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("serving previews of bucket %r on %s", store.bucket, socket_path)
    try:
        server.serve_forever()
    finally:
        server.server_close()
