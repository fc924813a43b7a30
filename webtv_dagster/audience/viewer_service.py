"""The viewer service: what the viewer's nginx cannot answer from files, on a Unix socket in the
data folder behind nginx.

- `GET /previews/<slug>/<clip>/<name>`: a clip's stage preview, from the bucket
  (production/previews.py).
- `POST /api/<slug>/requests` (JSON `{"idea", "name"}`): a viewer's shot request, moderated and
  queued (production/shot_requests.py); the answer says what happened in words for the viewer.
- `GET /api/<slug>/requests/<id>`: where that request stands.
- `GET /api/<slug>/guide.json`: the clips ahead with planned times, who requested which, and
  the queued requests with their expected air time.
- `GET /xmltv/<slug>.xml`: the channel's programme guide as XMLTV.
- `POST /api/<slug>/dump` (operator token; JSON `{"clip_id", "reason"}`): takes the clip off air
  now; the playout cuts it at its next keyframe.

Everything from outside is bounded (body size, idea and name length, per-client rate in the
queue, and nginx's `limit_req` in front). Neither answers nor logs name an object key, a
viewer's address or a credential.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webtv_dagster import clips
from webtv_dagster.audience.xmltv import CONTENT_TYPE as XMLTV_CONTENT_TYPE
from webtv_dagster.audience.xmltv import channel_xmltv
from webtv_dagster.backends.moderator import Moderator, clean_text
from webtv_dagster.backends.registry import build_moderators
from webtv_dagster.channels import Channel, ChannelConfigError, ChannelsFile, find_channel
from webtv_dagster.clips import ClipId
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.air_plan import planned_air
from webtv_dagster.playout.files import write_atomically
from webtv_dagster.playout.library import saved_playlist
from webtv_dagster.playout.playlist import Playlist
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.playout.takedowns import take_down
from webtv_dagster.production.previews import preview_object_key
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import (
    RequestQueue,
    RequestQueueUnavailable,
    ShotRequest,
    request_slots,
)
from webtv_dagster.public_site import share_with_nginx
from webtv_dagster.storage import StorageError

# A rerun replaces a clip's previews: browsers keep one a minute, then ask again (ETag).
PREVIEW_CACHE_CONTROL = "public, max-age=60"
MAX_BODY_BYTES = 4_096
GUIDE_SECONDS = 2.0  # a channel's guide is worked out at most this often
GUIDE_CLIPS = 20
GUIDE_REQUESTS = 20
_API = re.compile(
    r"^/api/(?P<slug>[a-z0-9-]{1,40})/(?P<what>requests|guide\.json|dump)"
    r"(?:/(?P<id>[0-9a-f]{12}))?$"
)
_XMLTV = re.compile(r"^/xmltv/(?P<slug>[a-z0-9-]{1,40})\.xml$")
log = logging.getLogger(__name__)


class ViewerServiceError(RuntimeError):
    """The viewer service cannot start; the message says why."""


# Wrong operator tokens a client may send in a minute: an operator mistypes, a guesser at 1,700
# a second (what the socket took) is held to this.
WRONG_TOKENS_ALLOWED = 5


def wrong_tokens_path(data_dir: Path) -> Path:
    """How many wrong operator tokens the service was sent, from all clients: what the stack's
    watchdog alerts on when it climbs fast (stack/watchdog.py)."""
    return data_dir / "viewer-service" / "wrong-operator-tokens.json"


def wrong_tokens_counted(data_dir: Path) -> int:
    """The count in wrong_tokens_path (0: none yet, or unreadable)."""
    try:
        return int(json.loads(wrong_tokens_path(data_dir).read_text())["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class BadRequest(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def request_view(request: ShotRequest, expected_at: float | None = None) -> dict[str, Any]:
    """What anyone may see of a request: never the client, nor the decider's name."""
    messages = {
        "pending": "waiting for a moderator",
        "approved": "queued",
        "scheduled": "being made into a clip",
        "refused": f"not this one: {request.reason}",
    }
    return {
        "id": request.id,
        "idea": request.idea,
        "requested_by": request.requester,
        "status": request.status,
        "message": messages[request.status],
        "clip_id": request.clip_id,
        "expected_at": expected_at,
    }


@dataclass
class ViewerSite:
    """What the service answers from: the bucket, the channels, the data folder."""

    store: MediaStore
    channels: ChannelsFile
    data_dir: Path
    operator_token: str = ""
    # When each client sent a wrong operator token, in the last minute (threads share it).
    _wrong_tokens: dict[str, list[float]] = field(default_factory=dict)
    _wrong_tokens_lock: threading.Lock = field(default_factory=threading.Lock)
    _moderators: dict[str, list[Moderator]] = field(default_factory=dict)
    _guides: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _queue: RequestQueue | None = None

    def channel(self, slug: str) -> Channel:
        try:
            return find_channel(self.channels, slug)
        except ChannelConfigError:
            raise BadRequest(404, "no such channel") from None

    @property
    def queue(self) -> RequestQueue:
        if self._queue is None:
            self._queue = RequestQueue(queue_path(self.data_dir))
        return self._queue

    def moderators(self, channel: Channel) -> list[Moderator]:
        if channel.slug not in self._moderators:
            self._moderators[channel.slug] = build_moderators(channel, self.channels.models)
        return self._moderators[channel.slug]

    def playlist(self, slug: str) -> Playlist | None:
        """The playout's last good copy of the playlist: no S3 call per viewer."""
        return saved_playlist(PlayoutFolder.of(self.data_dir, slug))

    def guide(self, channel: Channel, now: float | None = None) -> dict[str, Any]:
        """The clips ahead with planned times and credits, and the queued requests with their
        expected air time (estimated for those not yet made: one every request slot)."""
        now = time.time() if now is None else now
        cached = self._guides.get(channel.slug)
        if cached and now - cached[0] < GUIDE_SECONDS:
            return cached[1]
        state, playlist = read_state(self.data_dir, channel.slug), self.playlist(channel.slug)
        plan = planned_air(state, playlist, now)
        credits = (
            {e.clip_id: e.requested_by for e in playlist.entries if e.requested_by}
            if (playlist)
            else {}
        )
        requests: list[dict[str, Any]] = []
        if channel.requests.enabled:
            try:
                requests = self._queued_requests(
                    channel, plan, state.aired_through if state else 0, now
                )
            except RequestQueueUnavailable as error:  # a full disk: the guide without them
                log.warning("the guide lists no requests: %s", error)
        guide = {
            "channel": channel.slug,
            "title": channel.title,
            "takes_requests": channel.requests.enabled,
            "ahead": [clip.model_dump() for clip in plan[:GUIDE_CLIPS]],
            "credits": credits,
            "requests": requests,
        }
        self._guides[channel.slug] = (now, guide)
        return guide

    def _queued_requests(self, channel: Channel, plan, aired_through: int, now: float):
        starts = {clip.clip_id: clip.starts_at for clip in plan}
        made = [
            r
            for r in self.queue.listed(channel.slug, ["scheduled"], GUIDE_REQUESTS, newest=True)
            if r.clip_id and ClipId.parse(r.clip_id).number > aired_through
        ][::-1]
        numbers = [ClipId.parse(clip.clip_id).number for clip in plan if clip.clip_id != "ident"]
        last = max([aired_through, *numbers, *(ClipId.parse(r.clip_id).number for r in made)])
        plan_end = plan[-1].stops_at if plan else now
        last_planned = max([aired_through, *numbers])

        def estimate(number: int) -> float:
            return plan_end + (number - last_planned - 1) * channel.clip_seconds

        queued = self.queue.listed(channel.slug, ["approved"], GUIDE_REQUESTS)
        slots = request_slots(last, channel.requests.share, len(queued))
        views = [
            request_view(r, starts.get(r.clip_id) or estimate(ClipId.parse(r.clip_id).number))
            for r in made
        ]
        views += [request_view(r, estimate(slot)) for r, slot in zip(queued, slots, strict=True)]
        return views[:GUIDE_REQUESTS]

    def xmltv(self, channel: Channel) -> bytes:
        return channel_xmltv(
            channel, read_state(self.data_dir, channel.slug), self.playlist(channel.slug)
        )

    def _wrong_tokens_of(self, client: str, add: bool = False) -> int:
        """How many wrong tokens `client` sent in the last minute (with one more: `add`)."""
        now = time.monotonic()
        with self._wrong_tokens_lock:
            recent = [at for at in self._wrong_tokens.get(client, []) if now - at < 60]
            self._wrong_tokens[client] = [*recent, now] if add else recent
            if len(self._wrong_tokens) > 10_000:  # bounded: the clients of the last minute
                self._wrong_tokens = {
                    c: times
                    for c, times in self._wrong_tokens.items()
                    if times and now - times[-1] < 60
                }
            return len(self._wrong_tokens.get(client, []))

    def _count_wrong_token(self) -> None:
        """One more in wrong_tokens_path (written whole; a write that fails is logged)."""
        path = wrong_tokens_path(self.data_dir)
        with self._wrong_tokens_lock:
            counted = {"total": wrong_tokens_counted(self.data_dir) + 1, "at": time.time()}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, json.dumps(counted).encode())
            except OSError as error:
                log.warning("wrong operator tokens not counted: %s", error)

    def dump(
        self, channel: Channel, token: str, body: dict[str, Any], client: str = "local"
    ) -> dict[str, Any]:
        """Takes a clip off air at once, for an operator with the operator token. Wrong tokens
        are logged, and a client that sent WRONG_TOKENS_ALLOWED in a minute waits."""
        if not self.operator_token:
            raise BadRequest(403, "the dump button is off: set WEBTV_OPERATOR_TOKEN")
        if self._wrong_tokens_of(client) >= WRONG_TOKENS_ALLOWED:
            raise BadRequest(429, "too many wrong operator tokens; wait a minute")
        if not hmac.compare_digest(token.encode(), self.operator_token.encode()):
            count = self._wrong_tokens_of(client, add=True)
            self._count_wrong_token()
            log.warning(
                "%s: wrong operator token from %s (%d in the last minute)",
                channel.slug,
                client,
                count,
            )
            raise BadRequest(401, "wrong operator token")
        try:
            clip = ClipId.parse(str(body.get("clip_id", "")))
        except ValueError as error:
            raise BadRequest(400, str(error)) from None
        if clip.channel != channel.slug:
            raise BadRequest(400, f"{clip.key} is not a clip of {channel.slug}")
        reason = clean_text(str(body.get("reason") or ""), 300)
        takedown = take_down(
            store=self.store,
            clip=clip,
            reason=f"dumped from the viewer: {reason or 'no reason given'}",
        )
        log.warning("%s: taken off air from the viewer (%s)", clip.key, takedown.reason)
        return {"taken_down": clip.key, "reason": takedown.reason}


class ViewerServiceHandler(BaseHTTPRequestHandler):
    server: ViewerService
    server_version = "webtv-viewer-service"
    # A connection that sends nothing for this long is closed: 300 stalled clients once held
    # 300 threads for good.
    timeout = 10

    def do_GET(self) -> None:
        self._route(with_body=True)

    def do_HEAD(self) -> None:
        self._route(with_body=False)

    def do_POST(self) -> None:
        self._route(with_body=True)

    def _route(self, with_body: bool) -> None:
        path = urlsplit(self.path).path
        site = self.server.site
        try:
            if self.command != "POST" and (key := preview_object_key(path)) is not None:
                self._preview(key, path, with_body)
            elif self.command != "POST" and (match := _XMLTV.match(path)):
                body = site.xmltv(site.channel(match["slug"]))
                self._send(200, body, XMLTV_CONTENT_TYPE, "max-age=10")
            elif match := _API.match(path):
                self._api(site, site.channel(match["slug"]), match["what"], match["id"])
            else:
                self._plain(404, "not found\n")
        except BadRequest as error:
            self._json(error.status, {"error": str(error)})
        except StorageError as error:
            log.error("the media store did not answer: %s", type(error).__name__)
            self._json(502, {"error": "the media store did not answer; try again"})
        except RequestQueueUnavailable as error:
            log.error("%s", error)
            self._json(503, {"error": "requests cannot be taken right now; try again later"})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a probe reads no body)
        except Exception:  # a fault of ours: logged, answered, and the service goes on
            log.exception("%s %s failed", self.command, path)
            self._json(500, {"error": "the viewer service failed; try again"})

    def _api(self, site: ViewerSite, channel: Channel, what: str, request_id: str | None) -> None:
        if what == "guide.json" and self.command == "GET" and request_id is None:
            self._json(200, site.guide(channel), cache="max-age=2")
        elif what == "requests" and self.command == "GET" and request_id:
            request = site.queue.get(request_id)
            if request is None or request.channel != channel.slug:
                raise BadRequest(404, "no such request")
            self._json(200, request_view(request))
        elif what == "requests" and self.command == "POST" and request_id is None:
            body = self._body()
            idea, name = body.get("idea"), body.get("name") or ""
            if not isinstance(idea, str) or not isinstance(name, str):
                raise BadRequest(400, 'send JSON {"idea": "...", "name": "..."}')
            client = self.headers.get("X-Real-IP") or "local"
            answer = site.queue.submit(
                channel, idea, name, "web", f"web:{client}", site.moderators(channel)
            )
            status = {
                "approved": 202,
                "pending": 202,
                "refused": 422,
                "closed": 403,
                "rate_limited": 429,
                "queue_full": 429,
            }[answer.status]
            if answer.request_id:
                log.info("%s: request %s %s", channel.slug, answer.request_id, answer.status)
            self._json(status, answer.model_dump())
        elif what == "dump" and self.command == "POST" and request_id is None:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            client = self.headers.get("X-Real-IP") or "local"
            self._json(200, site.dump(channel, token, self._body(), client))
        else:
            raise BadRequest(405, "not allowed")

    def _body(self) -> dict[str, Any]:
        """A POST's JSON object. Only JSON from our own pages: a form or `text/plain` post, which
        a page of another site can make a visitor's browser send without asking, is refused, and
        so is any request whose Origin is another site (nginx passes the Host the browser used)."""
        media_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise BadRequest(415, "send the body as application/json")
        origin = self.headers.get("Origin")
        if origin and urlsplit(origin).netloc.lower() != self.headers.get("Host", "").lower():
            raise BadRequest(403, "requests from pages of other sites are refused")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise BadRequest(400, "bad Content-Length") from None
        if length > MAX_BODY_BYTES or length < 0:
            self.close_connection = True
            raise BadRequest(413, f"a request body has at most {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, RecursionError):
            raise BadRequest(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "the body is not a JSON object")
        return body

    def _preview(self, key: str, path: str, with_body: bool) -> None:
        try:
            with self.server.site.store.open_object(key) as stored:
                if stored.etag and self.headers.get("If-None-Match") == stored.etag:
                    self.send_response(304)
                    self._preview_headers(stored.etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", clips.preview_content_type(key))
                self.send_header("Content-Length", str(stored.size_bytes))
                self._preview_headers(stored.etag)
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
        log.error("%s", str(error).replace(self.server.site.store.uri(key), path))

    def _preview_headers(self, etag: str) -> None:
        self.send_header("Cache-Control", PREVIEW_CACHE_CONTROL)
        self.send_header("X-Content-Type-Options", "nosniff")
        if etag:
            self.send_header("ETag", etag)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: dict[str, Any], cache: str = "no-store") -> None:
        self._send(status, json.dumps(value).encode(), "application/json", cache)

    def _plain(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def version_string(self) -> str:
        return self.server_version

    def address_string(self) -> str:
        return "nginx"  # a Unix socket's peer has no address

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request is noise; failures are logged where they happen

    def log_message(self, format: str, *args) -> None:
        log.warning("%s", format % args)


class ViewerService(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers the viewer's nginx on a Unix socket, a thread per connection."""

    daemon_threads = True
    # socketserver's default backlog of 5 refuses connections in a burst (nginx then answers
    # 502): a burst of nginx's limit_req and the viewers' guide polls fit in this one.
    request_queue_size = 256

    def __init__(self, socket_path: Path, site: ViewerSite):
        self.site = site
        self.socket_path = socket_path
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(socket_path)
        super().__init__(str(socket_path), ViewerServiceHandler)
        share_with_nginx(socket_path)

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def _remove_stale_socket(socket_path: Path) -> None:
    """Removes the socket a killed predecessor left; one that answers is another server's."""
    if not socket_path.exists():
        return
    with socket.socket(socket.AF_UNIX) as probe:
        served = probe.connect_ex(str(socket_path)) == 0
    if served:
        raise ViewerServiceError(
            f"{socket_path} is served already (another `webtv viewer-service`?)"
        )
    socket_path.unlink()


def serve_viewer(socket_path: Path, site: ViewerSite) -> None:
    """Serves on `socket_path` until SIGINT or SIGTERM, then removes the socket."""
    server = ViewerService(socket_path, site)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("viewer service for bucket %r on %s", site.store.bucket, socket_path)
    try:
        server.serve_forever()
    finally:
        server.server_close()
