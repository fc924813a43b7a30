"""How many watch each channel: RTMP subscribers from nginx-rtmp's statistics, and HLS players
counted from nginx's log of playlist fetches (a player asks for the live playlist every
fragment, 2 s): the distinct players (address and browser) that fetched within the last
WINDOW_SECONDS. The viewer service runs the count and writes it, every few seconds, to the
public folder's watching.json (public_site.read_watching), which the viewer page shows ("N
watching"), the metrics export and the playouts write into each clip's as-run entry.

nginx sends each fetch as a syslog datagram to a socket of the viewer service's (shared with
nginx's workers alone); while no one listens, nginx notes each failed send in its error log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree

from webtv_dagster.playout.files import write_atomically
from webtv_dagster.public_site import (
    hls_fetch_socket,
    make_public_folder,
    share_with_nginx,
    watching_file,
)

log = logging.getLogger(__name__)

WINDOW_SECONDS = 30.0  # a player that fetched nothing for this long has left
WRITE_EVERY_SECONDS = 2.0
MOST_PLAYERS = 100_000  # per channel: a flood of forged agents costs bounded memory
STATISTICS_TIMEOUT = 1.0  # nginx answers at once, or it is hung (the watchdog's business)


def rtmp_viewers(statistics_url: str) -> dict[str, int]:
    """Each channel's RTMP subscribers (application: clients playing), from nginx-rtmp's
    statistics: the publisher and nginx's own relays are not viewers. Empty when nginx does
    not answer."""
    try:
        with urllib.request.urlopen(statistics_url, timeout=STATISTICS_TIMEOUT) as answer:
            root = ElementTree.fromstring(answer.read())
    except (OSError, ElementTree.ParseError) as error:
        log.debug("no RTMP statistics (%s)", error)
        return {}
    viewers = {}
    for application in root.iter("application"):
        clients = application.iter("client")
        viewers[application.findtext("name", "")] = sum(
            client.find("publishing") is None
            and not client.findtext("flashver", "").startswith("ngx-")
            for client in clients
        )
    return viewers


def playlist_fetch(datagram: bytes, slugs: Iterable[str]) -> tuple[str, str] | None:
    """The channel and the player (a digest of its address and browser) of one playlist
    served, or None for anything else (a channel not known, a refusal, a line not nginx's)."""
    _, _, message = datagram.decode("utf-8", "replace").partition(" webtv: ")
    try:
        fetch = json.loads(message)
        parts = fetch["uri"].split("/")  # /hls/<slug>/<stream>.m3u8
        player = f"{fetch['client']} {fetch['agent']}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(parts) != 4 or parts[2] not in slugs or fetch.get("status") != 200:
        return None  # a player that gets no playlist does not watch
    return parts[2], hashlib.sha256(player.encode()).hexdigest()[:16]


class HlsPlayers:
    """The distinct players that fetched each channel's playlist within WINDOW_SECONDS."""

    def __init__(self, slugs: Iterable[str], window: float = WINDOW_SECONDS):
        self.window = window
        self._seen: dict[str, dict[str, float]] = {slug: {} for slug in slugs}
        self._lock = threading.Lock()

    def fetched(self, slug: str, player: str, now: float) -> None:
        with self._lock:
            seen = self._seen[slug]
            if player in seen or len(seen) < MOST_PLAYERS:
                seen[player] = now

    def counts(self, now: float) -> dict[str, int]:
        """Each channel's players now; those gone are forgotten."""
        with self._lock:
            for seen in self._seen.values():
                for player in [p for p, at in seen.items() if now - at > self.window]:
                    del seen[player]
            return {slug: len(seen) for slug, seen in self._seen.items()}


class WatchingCount:
    """Listens for nginx's playlist fetches and writes watching.json every few seconds, in
    threads of its own, until stopped."""

    def __init__(self, data_dir: Path, slugs: list[str], statistics_url: str):
        self.data_dir = data_dir
        self.slugs = slugs
        self.statistics_url = statistics_url
        self.players = HlsPlayers(slugs)
        self.stop = threading.Event()
        self.socket_path = hls_fetch_socket(data_dir)
        make_public_folder(self.socket_path.parent)
        self.socket_path.unlink(missing_ok=True)  # a datagram socket: one reader at a time
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.socket_path))
        self._socket.settimeout(0.5)
        share_with_nginx(self.socket_path)

    def start(self) -> WatchingCount:
        threading.Thread(target=self._listen, name="hls-fetches", daemon=True).start()
        threading.Thread(target=self._write, name="watching", daemon=True).start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._socket.close()
        self.socket_path.unlink(missing_ok=True)

    def _listen(self) -> None:
        while not self.stop.is_set():
            try:
                datagram = self._socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if fetch := playlist_fetch(datagram, self.slugs):
                self.players.fetched(*fetch, time.monotonic())

    def _write(self) -> None:
        while not self.stop.wait(WRITE_EVERY_SECONDS):
            hls = self.players.counts(time.monotonic())
            rtmp = rtmp_viewers(self.statistics_url)
            watching = {
                "updated_at": time.time(),
                "channels": {s: {"hls": hls[s], "rtmp": rtmp.get(s, 0)} for s in self.slugs},
            }
            with contextlib.suppress(OSError):  # a full disk: the count is written next time
                write_atomically(watching_file(self.data_dir), json.dumps(watching).encode())
