"""The viewer service: what the viewer's nginx cannot answer from files, an ASGI application
(FastAPI on uvicorn) on a Unix socket in the public folder behind nginx, readable by nginx's
workers and the service's account alone. Its OpenAPI document is `/api/openapi.json`.

For viewers' pages:
- `GET /previews/<slug>/<clip>/<name>`: a clip's stage preview, from the bucket
  (production/previews.py).
- `POST /api/<slug>/requests` (JSON `{"idea", "name"}`): a viewer's shot request, moderated and
  queued (production/shot_requests.py); the answer says what happened in words for the viewer.
- `GET /api/<slug>/requests/<id>`: where that request stands.
- `GET /api/<slug>/guide.json`: the clips ahead with planned times, who requested which, and
  the queued requests with their expected air time.
- `GET /xmltv/<slug>.xml`: the channel's programme guide as XMLTV.

For operators (the operator token as a Bearer token):
- `POST /api/<slug>/dump` (`{"clip_id", "reason"}`): takes the clip off air now; the playout
  cuts it at its next keyframe.
- `POST /api/<slug>/requests/<id>/approve` and `.../refuse` (`{"reason"}`): decides a request.
- `POST /api/<slug>/play-next` (`{"clip_id"}`): airs a clip of the playlist next.
- `POST /api/<slug>/restart` (`{}`): restarts the channel's playout.

Bodies are JSON objects from our own pages only (a form, `text/plain` or another site's Origin
is refused), validated by the pydantic models below; a body or parameter the route cannot take
is answered 400, every refusal `{"error": ...}`. Everything from outside is bounded (body size,
idea and name length, per-client rate in the queue, wrong operator tokens per client, and
nginx's `limit_req` in front). Neither answers nor logs name an object key, a viewer's address
or a credential.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from webtv_dagster import clips
from webtv_dagster.audience.wrong_tokens import wrong_tokens_counted, wrong_tokens_path
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
from webtv_dagster.playout.process import restart_playout
from webtv_dagster.playout.sources import IDENT, cue_clip
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
from webtv_dagster.public_site import PREVIEWS_PATH, share_with_nginx
from webtv_dagster.storage import StorageError

# A rerun replaces a clip's previews: browsers keep one a minute, then ask again (ETag).
PREVIEW_CACHE_CONTROL = "public, max-age=60"
MAX_BODY_BYTES = 4_096
GUIDE_SECONDS = 2.0  # a channel's guide is worked out at most this often
GUIDE_CLIPS = 20
GUIDE_REQUESTS = 20
SLUG_PATTERN = r"^[a-z0-9-]{1,40}$"
REQUEST_ID_PATTERN = r"^[0-9a-f]{12}$"
OPENAPI_PATH = "/api/openapi.json"  # under /api/: nginx passes it with the routes it describes
IDLE_SECONDS = 10  # a connection that sends nothing this long is closed
BACKLOG = 256  # a burst of nginx's limit_req and the viewers' guide polls fit in it
# The status of an answer to a shot request, by what became of it.
SUBMIT_STATUS = {
    "approved": 202,
    "pending": 202,
    "refused": 422,
    "closed": 403,
    "rate_limited": 429,
    "queue_full": 429,
}
log = logging.getLogger(__name__)


class ViewerServiceError(RuntimeError):
    """The viewer service cannot start; the message says why."""


# Wrong operator tokens a client may send in a minute: an operator mistypes, a guesser at 1,700
# a second (what the socket took) is held to this.
WRONG_TOKENS_ALLOWED = 5


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
        numbers = [ClipId.parse(clip.clip_id).number for clip in plan if clip.clip_id != IDENT]
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

    def authorize(self, channel: Channel, token: str, client: str) -> None:
        """Lets an operator with the operator token through. Wrong tokens are logged, and a
        client that sent WRONG_TOKENS_ALLOWED in a minute waits (the right one too)."""
        if not self.operator_token:
            raise BadRequest(403, "operator routes are off: set WEBTV_OPERATOR_TOKEN")
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

    def clip_of(self, channel: Channel, clip_id: str) -> ClipId:
        try:
            clip = ClipId.parse(clip_id)
        except ValueError as error:
            raise BadRequest(400, str(error)) from None
        if clip.channel != channel.slug:
            raise BadRequest(400, f"{clip.key} is not a clip of {channel.slug}")
        return clip

    def dump(self, channel: Channel, clip_id: str, reason: str) -> dict[str, Any]:
        """Takes a clip off air at once; the playout cuts it at its next keyframe."""
        clip = self.clip_of(channel, clip_id)
        reason = clean_text(reason, 300)
        takedown = take_down(
            store=self.store,
            clip=clip,
            reason=f"dumped from the viewer: {reason or 'no reason given'}",
        )
        log.warning("%s: taken off air from the viewer (%s)", clip.key, takedown.reason)
        return {"taken_down": clip.key, "reason": takedown.reason}

    def decide(
        self, channel: Channel, request_id: str, approve: bool, reason: str
    ) -> dict[str, Any]:
        """An operator approves a pending request, or refuses one not yet made."""
        request = self.queue.get(request_id)
        if request is None or request.channel != channel.slug:
            raise BadRequest(404, "no such request")
        try:
            decided = self.queue.decide(request_id, approve, reason, "operator (web)")
        except ValueError as error:
            raise BadRequest(409, str(error)) from None
        log.info("%s: request %s %s by an operator", channel.slug, request_id, decided.status)
        return request_view(decided)

    def cue(self, channel: Channel, clip_id: str) -> dict[str, Any]:
        """Has the playout air the clip next (after the clip being prepared)."""
        clip = self.clip_of(channel, clip_id)
        playlist = self.playlist(channel.slug)
        if playlist is None or clip.key not in {e.clip_id for e in playlist.entries}:
            raise BadRequest(
                404, f"{clip.key} is not in the playlist (not made, taken down, or past retention)"
            )
        cue_clip(self.data_dir, channel.slug, clip.key)
        log.info("%s: cued by an operator", clip.key)
        return {"cued": clip.key}

    def restart(self, channel: Channel) -> dict[str, Any]:
        """Restarts the channel's playout: it stops, its supervisor starts it again, and it
        resumes where it left off."""
        restarting = restart_playout(self.data_dir, channel.slug)
        if not restarting:
            raise BadRequest(409, f"{channel.slug}'s playout is not running")
        log.warning("%s: playout restarted by an operator", channel.slug)
        return {"restarting": channel.slug}


class ShotRequestBody(BaseModel):
    idea: StrictStr = Field(description="the shot a viewer suggests (moderated)")
    name: StrictStr | None = Field("", description="the name to credit (optional)")


class ClipBody(BaseModel):
    clip_id: StrictStr = Field(description="a clip of the channel, `<channel>-<number>`")


class DumpBody(ClipBody):
    reason: StrictStr | None = Field("", description="why (kept with the take-down)")


class DecisionBody(BaseModel):
    reason: StrictStr | None = Field("", description="why (shown to the viewer if refused)")


class ErrorAnswer(BaseModel):
    """Every refusal and failure: what went wrong, in words (never a key or an address)."""

    error: str


OPERATOR_ERRORS = {
    401: {"description": "no operator token, or a wrong one", "model": ErrorAnswer},
    403: {"description": "operator routes are off (no WEBTV_OPERATOR_TOKEN)"},
    429: {"description": "too many wrong tokens from this client in a minute"},
}


class RequestAnswer(BaseModel):
    """What became of a shot request, in words for the viewer."""

    model_config = {"extra": "allow"}
    status: str
    message: str


def _client(request: Request) -> str:
    """The viewer as nginx saw it (X-Real-IP), the only address the service believes."""
    return request.headers.get("X-Real-IP") or "local"


async def from_our_pages(request: Request) -> None:
    """A POST's body: JSON only, from our own pages. A form or `text/plain` post, which a page
    of another site can make a visitor's browser send without asking, is refused, and so is
    any request whose Origin is another site (nginx passes the Host the browser used)."""
    media_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(415, "send the body as application/json")
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower():
        raise BadRequest(403, "requests from pages of other sites are refused")
    if len(await request.body()) > MAX_BODY_BYTES:
        raise BadRequest(413, f"a request body has at most {MAX_BODY_BYTES} bytes")


def _site(request: Request) -> ViewerSite:
    return request.app.state.site


Site = Annotated[ViewerSite, Depends(_site)]


def _channel(site: Site, slug: Annotated[str, PathParam(pattern=SLUG_PATTERN)]) -> Channel:
    return site.channel(slug)


ChannelOf = Annotated[Channel, Depends(_channel)]
RequestId = Annotated[str, PathParam(pattern=REQUEST_ID_PATTERN)]
BEARER = HTTPBearer(auto_error=False, description="the operator token (WEBTV_OPERATOR_TOKEN)")


def _operator(
    request: Request,
    site: Site,
    channel: ChannelOf,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Channel:
    site.authorize(channel, credentials.credentials if credentials else "", _client(request))
    return channel


Operator = Annotated[Channel, Depends(_operator)]
POSTED = [Depends(from_our_pages)]
routes = APIRouter()
operator_routes = APIRouter(tags=["operator"], dependencies=POSTED, responses=OPERATOR_ERRORS)


@routes.get("/api/{slug}/guide.json", tags=["viewers"])
def guide(site: Site, channel: ChannelOf) -> JSONResponse:
    """The clips ahead with planned times and credits, and the queued requests with their
    expected air time."""
    return JSONResponse(site.guide(channel), headers={"Cache-Control": "max-age=2"})


@routes.post(
    "/api/{slug}/requests",
    tags=["viewers"],
    dependencies=POSTED,
    response_model=RequestAnswer,
    status_code=202,
    responses={
        422: {"description": "refused (the message says why)", "model": RequestAnswer},
        429: {"description": "too many from this viewer, or the queue is full"},
    },
)
def request_shot(
    request: Request, site: Site, channel: ChannelOf, body: ShotRequestBody
) -> JSONResponse:
    """A viewer's shot request, moderated and queued: the answer says what happened."""
    answer = site.queue.submit(
        channel,
        body.idea,
        body.name or "",
        "web",
        f"web:{_client(request)}",
        site.moderators(channel),
    )
    if answer.request_id:
        log.info("%s: request %s %s", channel.slug, answer.request_id, answer.status)
    return JSONResponse(answer.model_dump(), SUBMIT_STATUS[answer.status])


@routes.get("/api/{slug}/requests/{request_id}", tags=["viewers"])
def shot_request(site: Site, channel: ChannelOf, request_id: RequestId) -> dict[str, Any]:
    """Where a shot request stands."""
    request = site.queue.get(request_id)
    if request is None or request.channel != channel.slug:
        raise BadRequest(404, "no such request")
    return request_view(request)


@routes.head("/xmltv/{slug}.xml", include_in_schema=False)
@routes.get(
    "/xmltv/{slug}.xml",
    tags=["viewers"],
    response_class=Response,
    responses={200: {"content": {XMLTV_CONTENT_TYPE: {}}}},
)
def xmltv(site: Site, channel: ChannelOf) -> Response:
    """The channel's programme guide as XMLTV."""
    return Response(
        site.xmltv(channel),
        media_type=XMLTV_CONTENT_TYPE,
        headers={"Cache-Control": "max-age=10"},
    )


@routes.head(PREVIEWS_PATH + "{slug}/{clip_id}/{name}", include_in_schema=False)
@routes.get(
    PREVIEWS_PATH + "{slug}/{clip_id}/{name}",
    tags=["viewers"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, 304: {}},
)
def preview(request: Request, site: Site, slug: str, clip_id: str, name: str) -> Response:
    """A clip's stage preview, from the bucket (with its ETag)."""
    # The path as sent, not percent-decoded: an encoded name is no preview's.
    key = preview_object_key(request.scope["raw_path"].decode("latin-1").split("?", 1)[0])
    if key is None:
        raise BadRequest(404, "no such preview")
    return _preview(site.store, key, request)


@operator_routes.post("/api/{slug}/dump")
def dump(site: Site, channel: Operator, body: DumpBody) -> dict[str, Any]:
    """Takes a clip off air now: the playout cuts it at its next keyframe."""
    return site.dump(channel, body.clip_id, body.reason or "")


@operator_routes.post("/api/{slug}/requests/{request_id}/approve")
def approve(
    site: Site, channel: Operator, request_id: RequestId, body: DecisionBody
) -> dict[str, Any]:
    """Approves a request waiting for a moderator: it joins the queue."""
    return site.decide(channel, request_id, True, body.reason or "")


@operator_routes.post("/api/{slug}/requests/{request_id}/refuse")
def refuse(
    site: Site, channel: Operator, request_id: RequestId, body: DecisionBody
) -> dict[str, Any]:
    """Refuses a request not yet made into a clip (its viewer is told the reason)."""
    return site.decide(channel, request_id, False, body.reason or "")


@operator_routes.post("/api/{slug}/play-next")
def play_next(site: Site, channel: Operator, body: ClipBody) -> dict[str, Any]:
    """Airs a clip of the playlist next, after the clip being prepared: a replay, or one ahead
    of its turn (which airs again in its turn)."""
    return site.cue(channel, body.clip_id)


@operator_routes.post("/api/{slug}/restart")
def restart(site: Site, channel: Operator) -> dict[str, Any]:
    """Restarts the channel's playout: its supervisor starts it again, and it resumes where
    it left off."""
    return site.restart(channel)


def viewer_app(site: ViewerSite) -> FastAPI:
    """The service: what viewers' pages ask through nginx, and the operator's routes (the
    operator token as a Bearer token), each described in the OpenAPI document."""
    app = FastAPI(
        title="webtv viewer service",
        summary="Shot requests, the guide, XMLTV, previews and operator actions per channel",
        version="1",
        openapi_url=OPENAPI_PATH,
        redirect_slashes=False,  # a path is what it names, or nothing
        docs_url=None,
        redoc_url=None,
    )
    app.state.site = site
    app.include_router(routes)
    app.include_router(operator_routes)
    app.openapi = lambda: _openapi(app)

    @app.exception_handler(BadRequest)
    def bad_request(_request: Request, error: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(error)}, error.status)

    @app.exception_handler(RequestValidationError)
    def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'body'}: {e['msg']}"
            for e in error.errors()[:3]
        )
        return JSONResponse({"error": f"not what this route takes: {problems}"[:300]}, 400)

    @app.exception_handler(StarletteHTTPException)
    def refused(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail).lower()}, error.status_code)

    @app.exception_handler(StorageError)
    def store_away(_request: Request, error: StorageError) -> JSONResponse:
        log.error("the media store did not answer: %s", type(error).__name__)
        return JSONResponse({"error": "the media store did not answer; try again"}, 502)

    @app.exception_handler(RequestQueueUnavailable)
    def queue_away(_request: Request, error: RequestQueueUnavailable) -> JSONResponse:
        log.error("%s", error)
        return JSONResponse({"error": "requests cannot be taken right now; try again later"}, 503)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        try:
            response = await call_next(request)
        except Exception:  # a fault of ours: logged, answered, and the service goes on
            log.exception("%s %s failed", request.method, request.url.path)
            response = JSONResponse({"error": "the viewer service failed; try again"}, 500)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, saying what the service answers to a body it cannot take (400 with
    an ErrorAnswer, not FastAPI's 422, which a shot request's refusal means here)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        error = {"$ref": "#/components/schemas/ErrorAnswer"}
        for operations in document["paths"].values():
            for operation in operations.values():
                answers = operation["responses"]
                validation = answers.get("422", {}).get("content", {}).get("application/json")
                if validation and validation["schema"].get("$ref", "").endswith(
                    "/HTTPValidationError"
                ):
                    del answers["422"]
                if "parameters" in operation or "requestBody" in operation:
                    answers["400"] = {
                        "description": "a body or parameter it cannot take",
                        "content": {"application/json": {"schema": error}},
                    }
        schemas = document["components"]["schemas"]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["ErrorAnswer"] = ErrorAnswer.model_json_schema()
        app.openapi_schema = document
    return app.openapi_schema


def _preview(store: MediaStore, key: str, request: Request) -> Response:
    """The preview streamed from the bucket (never whole in memory), or 304 when the browser's
    copy is current; a failure half-way can only close the connection (the status is sent),
    which tells the browser the image is incomplete."""
    opened = contextlib.ExitStack()
    try:
        stored = opened.enter_context(store.open_object(key))
    except FileNotFoundError:
        raise BadRequest(404, "no such preview") from None
    except StorageError as error:
        _log_storage_error(store, key, request.url.path, error)
        raise BadRequest(502, "the media store did not answer") from None
    headers = {
        "Cache-Control": PREVIEW_CACHE_CONTROL,
        **({"ETag": stored.etag} if stored.etag else {}),
    }
    if stored.etag and request.headers.get("If-None-Match") == stored.etag:
        opened.close()
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        opened.close()
        headers["Content-Length"] = str(stored.size_bytes)
        return Response(headers=headers, media_type=clips.preview_content_type(key))

    def chunks() -> Iterator[bytes]:
        with opened:
            try:
                yield from stored.chunks
            except StorageError as error:
                _log_storage_error(store, key, request.url.path, error)
                raise

    headers["Content-Length"] = str(stored.size_bytes)
    return StreamingResponse(chunks(), media_type=clips.preview_content_type(key), headers=headers)


def _log_storage_error(store: MediaStore, key: str, path: str, error: StorageError) -> None:
    # Its message says what to check, naming the object: the log names its URL path.
    log.error("%s", str(error).replace(store.uri(key), path))


class _IdleClosingH11(H11Protocol):
    """uvicorn's HTTP/1.1, which closes a connection idle between requests, closing one that
    sends nothing from the start as well (stalled clients once held the service's threads)."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )


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


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve_viewer's handlers stop it; uvicorn's would raise the signal again once it
        # stopped, killing the process before it removes its socket.
        yield


class ViewerService:
    """The service on its Unix socket, shared with nginx's workers alone (uvicorn, given a path,
    would make it 0666: it is given the socket), served by uvicorn until shut down."""

    def __init__(self, socket_path: Path, site: ViewerSite):
        self.site = site
        self.socket_path = socket_path
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(socket_path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(str(socket_path))
        share_with_nginx(socket_path)
        self._socket.listen(BACKLOG)  # connections wait for uvicorn's start, never refused
        self._server = _Server(
            uvicorn.Config(
                viewer_app(site),
                http=_IdleClosingH11,
                timeout_keep_alive=IDLE_SECONDS,
                timeout_graceful_shutdown=5,
                backlog=BACKLOG,
                access_log=False,
                log_config=None,
                lifespan="off",
            )
        )
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        """Serves until shut down."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._stopped.set()

    def stop_serving(self) -> None:
        """Asks the server to stop (from a signal handler too)."""
        self._server.should_exit = True

    def shutdown(self) -> None:
        self.stop_serving()
        self._stopped.wait(10)

    def server_close(self) -> None:
        self._socket.close()
        self.socket_path.unlink(missing_ok=True)


def serve_viewer(socket_path: Path, site: ViewerSite) -> None:
    """Serves on `socket_path` until SIGINT or SIGTERM, then removes the socket."""
    server = ViewerService(socket_path, site)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop_serving())
    log.info("viewer service for bucket %r on %s", site.store.bucket, socket_path)
    try:
        server.serve_forever()
    finally:
        server.server_close()
