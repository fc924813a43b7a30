"""The stack seen from monitoring tools: Prometheus metrics, and health for a load balancer or a
Kubernetes probe, served by the watchdog (which looks at every program four times a second
anyway) on a socket of the data folder that nginx proxies on the viewer's HTTP port:

- `/metrics`: the metrics below in Prometheus' text format, to loopback clients (not through a
  reverse proxy) or with the operator token (`Authorization: Bearer <WEBTV_OPERATOR_TOKEN>`);
- `/healthz`: 200 while the watchdog answers and supervisord does (the stack is alive);
- `/readyz`: 200 when every channel not stopped by an operator is on air, else 503 naming
  those off air.

Per channel (label `channel`): `webtv_channel_on_air`, `webtv_channel_seconds_since_last_frame`,
`webtv_channel_unplayed_seconds`, `webtv_channel_publisher_restarts_total`,
`webtv_channel_clips_skipped_total`, `webtv_channel_clips_taken_down_total` (the last three
since its playout began: Prometheus' `increase()` handles the reset of a restart),
`webtv_channel_stopped`, `webtv_channel_rtmp_viewers` (RTMP subscribers, from nginx-rtmp's
statistics), `webtv_channel_hls_viewers` (distinct HLS players of the last 30 s, counted by
the viewer service: audience/watching.py), and `webtv_channel_requests` (label `status`:
pending and approved are the queue, scheduled and refused its decisions of the last 24 hours).
Per supervised program (label `program`): `webtv_process_up`, `webtv_process_state` (label
`state`, 1 for the current one) and `webtv_process_restarts_total` (starts the watchdog saw
after the first). Per channel and
clip stage (labels `channel`, `stage`): `webtv_clips_made_total` and `webtv_clips_failed_total`
(a stage that failed for the clip itself, not one left undone after an earlier stage failed),
counted from Dagster's event log by the code location's production_counts_sensor into the data
folder (the watchdog runs no Dagster); the production rate is Prometheus' `rate()` of them.
Every scrape reads the files and the request database afresh: its cost grows with the channels,
not with history.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socketserver
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from webtv_dagster.audience.watching import WINDOW_SECONDS, rtmp_viewers
from webtv_dagster.playout.files import write_atomically
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.production.request_counts import (
    DECIDED,
    QUEUED,
    queue_path,
    request_counts,
)
from webtv_dagster.public_site import read_watching, share_with_nginx
from webtv_dagster.stack.supervisord import supervised_name

log = logging.getLogger(__name__)

ON_AIR_SECONDS = 3.0  # a publisher reports progress several times a second while it sends
DECISIONS_WINDOW_SECONDS = 86_400
PRODUCTION_COUNTS_FILE = "production-counts.json"
PRODUCTION_OUTCOMES = ("made", "failed")
PROCESS_STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL")


# {channel: {stage: {outcome: count}}}
ProductionCounts = dict[str, dict[str, dict[str, int]]]


def read_production_counts(data_dir: Path) -> ProductionCounts:
    """The clips made and failed per channel and stage, as the production_counts_sensor last
    wrote them ({} before its first tick, or if the file cannot be read)."""
    try:
        return json.loads((data_dir / PRODUCTION_COUNTS_FILE).read_bytes())
    except (OSError, ValueError):
        return {}


def write_production_counts(data_dir: Path, counts: ProductionCounts) -> None:
    write_atomically(data_dir / PRODUCTION_COUNTS_FILE, json.dumps(counts).encode())


class ChannelAir:
    """What a channel's playout folder says of its air now."""

    def __init__(self, data_dir: Path, slug: str, now: float):
        folder = PlayoutFolder.of(data_dir, slug)
        self.state = read_state(data_dir, slug)
        self.stopped = folder.stopped_marker.exists()
        try:
            self.since_last_frame: float | None = max(0.0, now - folder.progress.stat().st_mtime)
        except FileNotFoundError:
            self.since_last_frame = None  # never sent a frame
        self.on_air = self.since_last_frame is not None and self.since_last_frame <= ON_AIR_SECONDS
        self.unplayed_seconds = 0.0
        if self.state is not None:
            queued = sum(
                max(0.0, min(clip.duration_seconds, clip.starts_at + clip.duration_seconds - now))
                for clip in self.state.schedule
            )
            self.unplayed_seconds = queued + self.state.unplayed_seconds


class StackMetrics(Collector):
    """The stack's metrics, read afresh at each scrape (module docstring). `processes` gives
    supervisord's latest process list, `restarts` the starts counted per program; viewers are
    read from nginx-rtmp's statistics at `statistics_url` (None: not counted)."""

    def __init__(
        self,
        data_dir: Path,
        slugs: Sequence[str],
        processes: Callable[[], list[dict]],
        restarts: Callable[[], dict[str, int]],
        statistics_url: str | None = None,
    ):
        self.data_dir, self.slugs = data_dir, list(slugs)
        self.processes, self.restarts = processes, restarts
        self.statistics_url = statistics_url

    def air(self) -> dict[str, ChannelAir]:
        now = time.time()
        return {slug: ChannelAir(self.data_dir, slug, now) for slug in self.slugs}

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._channel_metrics(self.air())
        yield from self._production_metrics()
        yield from self._request_metrics()
        yield from self._viewer_metrics()
        yield from self._process_metrics()

    def _channel_metrics(self, air: dict[str, ChannelAir]) -> Iterator:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["channel"])

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=["channel"])

        on_air = gauge("webtv_channel_on_air", "1 while the channel's publisher sends frames")
        stopped = gauge("webtv_channel_stopped", "1 while an operator has the channel stopped")
        since = gauge(
            "webtv_channel_seconds_since_last_frame",
            "seconds since the publisher last reported frames sent",
        )
        unplayed = gauge(
            "webtv_channel_unplayed_seconds", "seconds of clips ready that have not aired yet"
        )
        restarts = counter(
            "webtv_channel_publisher_restarts", "publishers replaced since the playout began"
        )
        skipped = counter(
            "webtv_channel_clips_skipped",
            "clips refused at air time since the playout began, take-downs included",
        )
        taken_down = counter(
            "webtv_channel_clips_taken_down", "clips taken down since the playout began"
        )
        for slug, channel in air.items():
            on_air.add_metric([slug], float(channel.on_air))
            stopped.add_metric([slug], float(channel.stopped))
            if channel.since_last_frame is not None:
                since.add_metric([slug], channel.since_last_frame)
            unplayed.add_metric([slug], channel.unplayed_seconds)
            state = channel.state
            if state is not None:
                restarts.add_metric([slug], state.publisher_restarts)
                skipped.add_metric([slug], state.clips_skipped)
                taken_down.add_metric([slug], state.clips_taken_down)
        yield from (on_air, stopped, since, unplayed, restarts, skipped, taken_down)

    def _production_metrics(self) -> Iterator[CounterMetricFamily]:
        counts = read_production_counts(self.data_dir)
        helps = {
            "made": "clip stages made, per channel and stage",
            "failed": "clip stages that failed (the stage itself), per channel and stage",
        }
        families = {
            outcome: CounterMetricFamily(
                f"webtv_clips_{outcome}", helps[outcome], labels=["channel", "stage"]
            )
            for outcome in PRODUCTION_OUTCOMES
        }
        for slug in self.slugs:
            for stage, outcomes in sorted(counts.get(slug, {}).items()):
                for outcome, family in families.items():
                    family.add_metric([slug, stage], outcomes.get(outcome, 0))
        yield from families.values()

    def _request_metrics(self) -> Iterator[GaugeMetricFamily]:
        requests = GaugeMetricFamily(
            "webtv_channel_requests",
            "viewers' shot requests waiting (pending, approved) and decided in the last 24 h "
            "(scheduled, refused)",
            labels=["channel", "status"],
        )
        try:
            since = time.time() - DECISIONS_WINDOW_SECONDS
            counts = request_counts(queue_path(self.data_dir), self.slugs, since)
        except sqlite3.Error as error:
            log.warning("metrics: the request queue cannot be read now: %s", error)
            counts = {}
        for slug in self.slugs:
            for status in (*QUEUED, *DECIDED):
                requests.add_metric([slug, status], counts.get((slug, status), 0))
        yield requests

    def _viewer_metrics(self) -> Iterator[GaugeMetricFamily]:
        if self.statistics_url is None:
            return
        viewers = GaugeMetricFamily(
            "webtv_channel_rtmp_viewers",
            "RTMP subscribers watching the channel (not its publisher, not the mirrors)",
            labels=["channel"],
        )
        counted = rtmp_viewers(self.statistics_url)
        for slug in self.slugs:
            if slug in counted:
                viewers.add_metric([slug], counted[slug])
        yield viewers
        players = GaugeMetricFamily(
            "webtv_channel_hls_viewers",
            f"distinct HLS players that fetched the channel's playlist in the last "
            f"{WINDOW_SECONDS:.0f} s (absent while the viewer service does not count)",
            labels=["channel"],
        )
        watching = read_watching(self.data_dir, time.time())
        for slug in self.slugs:
            if slug in watching:
                players.add_metric([slug], watching[slug]["hls"])
        yield players

    def _process_metrics(self) -> Iterator:
        up = GaugeMetricFamily(
            "webtv_process_up", "1 while supervisord runs the program", labels=["program"]
        )
        states = GaugeMetricFamily(
            "webtv_process_state",
            "the program's supervisord state (1 for the current one)",
            labels=["program", "state"],
        )
        restarts = CounterMetricFamily(
            "webtv_process_restarts",
            "starts of the program after its first, as the watchdog saw them",
            labels=["program"],
        )
        processes = self.processes()
        counted = self.restarts()  # after: a source may count them from the same look
        for info in processes:
            program = supervised_name(info)
            up.add_metric([program], float(info["statename"] == "RUNNING"))
            for state in PROCESS_STATES:
                states.add_metric([program, state], float(info["statename"] == state))
            restarts.add_metric([program], counted.get(program, 0))
        yield from (up, states, restarts)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # a Unix peer has no address: http.server wants a pair
        connection, _ = super().get_request()
        connection.settimeout(10)  # a client that stalls is dropped
        return connection, ("unix", 0)


def serve_monitoring(
    socket_path: Path,
    metrics: StackMetrics,
    alive: Callable[[], bool],
    operator_token: str,
) -> _UnixHTTPServer:
    """Serves /metrics, /healthz and /readyz on `socket_path` (shared with nginx alone) in a
    thread; returns the server (`shutdown()` stops it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = self.path.split("?", 1)[0]
            if route == "/metrics":
                if not self._may_read_metrics():
                    self._answer(401, b"the operator token is needed\n", "text/plain")
                    return
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif route == "/healthz":
                ok = alive()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"not alive\n", "text/plain")
            elif route == "/readyz":
                off = [
                    slug
                    for slug, channel in metrics.air().items()
                    if not channel.on_air and not channel.stopped
                ]
                body = json.dumps({"ready": not off, "off_air": off}).encode()
                self._answer(503 if off else 200, body, "application/json")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _may_read_metrics(self) -> bool:
            # Local: from loopback as nginx saw it, and not through a reverse proxy on this
            # machine (Caddy's requests come from loopback too, marked X-Forwarded-For).
            local = _is_loopback(self.headers.get("X-Real-IP", ""))
            if local and not self.headers.get("X-Forwarded-For"):
                return True
            given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            return bool(operator_token) and hmac.compare_digest(
                given.encode(), operator_token.encode()
            )

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # scrapes every few seconds are not news

    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    server = _UnixHTTPServer(str(socket_path), Handler)
    share_with_nginx(socket_path)
    threading.Thread(target=server.serve_forever, name="monitoring", daemon=True).start()
    return server
