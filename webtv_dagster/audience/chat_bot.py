"""A channel's chat bot: viewers type `!add <idea>` in the channel's IRC chat (Twitch chat is IRC
over TLS); the bot queues the idea as a shot request (production/shot_requests.py), answers the
viewer, and announces a requested clip shortly before it airs.

One long-running process per channel (`run_chat_bot`). The chat is read on one thread (the `irc`
library's reactor) and ideas are moderated on another, so a judge that takes seconds never stops
the reading. Messages leave at most one per `reply_interval` (Twitch lets a normal account send
20 in 30 s) from a short queue that drops its oldest replies, so a flood of commands can neither
get the bot disconnected nor put it behind for good. It reconnects by itself, with backoff.

The token is read from the environment inside the process and written to the socket as the
first line (PASS) before the irc library is handed the socket: it never reaches that library
(which logs every line it sends at DEBUG), a log, an exception or a command line.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import signal
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import irc.client
from jaraco.stream.buffer import LenientDecodingLineBuffer

from webtv_dagster.audience.twitch_token import TokenKeeper, load_grant, token_path
from webtv_dagster.backends.moderator import Moderator
from webtv_dagster.backends.registry import build_moderators
from webtv_dagster.channels import Channel, ChatBot
from webtv_dagster.model_endpoints import ModelEndpoint
from webtv_dagster.playout.air_plan import PlannedClip, planned_air
from webtv_dagster.playout.library import saved_playlist
from webtv_dagster.playout.process import Heartbeat
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import RequestQueue, ShotRequest
from webtv_dagster.settings import named_secret

log = logging.getLogger(__name__)

ADD_COMMAND = re.compile(r"!add(?:\s+(?P<idea>.*))?", re.IGNORECASE | re.DOTALL)
USAGE = "type !add and your idea for a shot, e.g. !add a llama flying a red kite"
NOT_TAKEN = "Sorry, your idea could not be taken just now; please try again later."
MAX_TEXT_BYTES = 400  # of a message's text: an IRC line is 512 bytes with its command
FLOODER_TOLD_EVERY_SECONDS = 60.0
LOGIN_REFUSALS = ("authentication failed", "improperly formatted auth", "invalid nick")


class ChatBotConfigError(ValueError):
    """The channel cannot run a chat bot as configured; the message says what to change."""


@dataclass(frozen=True)
class ChatPacing:
    """The bot's timings. The defaults suit Twitch, where a normal account may send 20
    messages in 30 s and is disconnected beyond."""

    reply_interval: float = 1.5  # seconds between two messages the bot sends
    replies_waiting: int = 20  # replies waiting to be sent at most; the oldest are dropped
    backlog: int = 50  # commands waiting for moderation at most; more are ignored
    announce_every: float = 2.0  # how often the air plan is read
    announce_late: float = 5.0  # a clip that started at most this long ago is still announced
    first_retry: float = 1.0  # wait before reconnecting, doubled after each failure ...
    last_retry: float = 60.0  # ... up to this
    # Connecting, the TLS handshake and each send: within the watchdog's allowance for a bot
    # (CHAT_BOT_HANG_SECONDS), so a slow server is never taken for a hung bot.
    socket_timeout: float = 5.0
    login_timeout: float = 30.0  # from connecting to having joined the channel
    quiet_ping: float = 90.0  # the bot PINGs a server silent this long ...
    quiet_limit: float = 180.0  # ... and connects again when it stays silent this long


def chat_settings(channel: Channel) -> ChatBot:
    """The channel's chat settings, or an error saying where to add them."""
    chat = channel.requests.chat
    if chat is None:
        raise ChatBotConfigError(
            f"channel {channel.slug!r} has no chat bot: add 'requests: {{enabled: true, chat: "
            f"{{channel: '#yourchannel', nick: yourbot}}}}' to it in the channels file"
        )
    return chat


def read_token(channel: Channel, environ: Mapping[str, str]) -> str:
    """The bot's login token from the variable the channel names, with Twitch's `oauth:` in
    front (added when the variable holds the bare token). The errors never quote it."""
    chat = chat_settings(channel)
    token = environ.get(chat.token_env, "").strip()
    if not token:
        raise ChatBotConfigError(
            f"the chat bot of channel {channel.slug!r} logs in with the token in the environment "
            f"variable {chat.token_env}, which is unset or empty: set it to the bot account's "
            "OAuth token (oauth:...)"
        )
    if not token.isprintable() or any(character.isspace() for character in token):
        raise ChatBotConfigError(
            f"the environment variable {chat.token_env} (the chat bot token of channel "
            f"{channel.slug!r}) holds spaces or control characters: it must hold the token alone"
        )
    return "oauth:" + token[6:] if token[:6].lower() == "oauth:" else "oauth:" + token


# A bot that has not beaten this long hangs (its loop steps every 0.2 s; connecting waits
# ChatPacing.socket_timeout at most): the stack's watchdog kills it for its supervisor.
CHAT_BOT_HANG_SECONDS = 6.5


def chat_bot_heartbeat(data_dir: Path, slug: str) -> Path:
    """The file a channel's chat bot touches as it works (playout/process.Heartbeat)."""
    return data_dir / "chat" / slug / "heartbeat"


def chat_account(source: irc.client.NickMask) -> str:
    """Who the per-viewer request limits count a chat message against: the connection's user
    and host, which a NICK command does not change (on Twitch, `nick!nick@nick.tmi.twitch.tv`:
    the account), rather than the nick a viewer may change between two requests."""
    return f"chat:{source.user or source.nick}@{source.host or ''}".lower()


def one_line(text: str) -> str:
    """`text` as the text of one IRC message: no line breaks, at most MAX_TEXT_BYTES."""
    text = " ".join(text.replace("\0", " ").split())
    return text.encode()[:MAX_TEXT_BYTES].decode(errors="ignore")


def announcement(request: ShotRequest, starts_at: float, now: float) -> str:
    credit = f"{request.idea}, requested by {request.requester}"
    seconds = round(starts_at - now)
    return f"Up next in ~{seconds} s: {credit}" if seconds >= 1 else f"On air now: {credit}"


class _Connector:
    """Opens the connection to the server (TLS when asked) and sends PASS on it, first, before
    the irc library gets the socket: the library never holds the token."""

    def __init__(
        self,
        chat: ChatBot,
        token: Callable[[], str],
        timeout: float,
        tls: ssl.SSLContext | None,
    ):
        self._host, self._timeout, self._tls = chat.server, timeout, tls
        self._token = token  # read at each connection: a refreshed token is used at once

    def __call__(self, address: tuple[str, int]) -> socket.socket:
        sock = socket.create_connection(address, timeout=self._timeout)
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
            sock.sendall(f"PASS {self._token()}\r\n".encode())
        except BaseException:
            sock.close()
            raise
        return sock

    def __repr__(self) -> str:
        return f"<chat connector to {self._host}>"


class _ServerConnection(irc.client.ServerConnection):
    # A viewer writing in another encoding than UTF-8 gets latin-1, never a crash.
    buffer_class = LenientDecodingLineBuffer


class _Reactor(irc.client.Reactor):
    connection_class = _ServerConnection


@dataclass
class _Announcement:
    request: ShotRequest
    starts_at: float


class ChannelChatBot:
    """One channel's bot on one IRC server (see the module's docstring)."""

    def __init__(
        self,
        channel: Channel,
        moderators: list[Moderator],
        requests: RequestQueue,
        data_dir: Path,
        token: str | TokenKeeper,
        pacing: ChatPacing = ChatPacing(),
        tls_context: ssl.SSLContext | None = None,
        notify_socket: str = "",
    ):
        self.channel, self.chat = channel, chat_settings(channel)
        heartbeat = chat_bot_heartbeat(data_dir, channel.slug)
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        self.heartbeat = Heartbeat(heartbeat, notify_socket)
        self.moderators, self.requests, self.data_dir = moderators, requests, data_dir
        self.pacing = pacing
        if self.chat.tls and tls_context is None:
            tls_context = ssl.create_default_context()
        self.keeper = token if isinstance(token, TokenKeeper) else None
        self._connector = _Connector(
            self.chat,
            self.keeper.token if self.keeper else lambda: token,
            pacing.socket_timeout,
            tls_context if self.chat.tls else None,
        )
        self._where = f"{self.chat.server}:{self.chat.port}"
        self._room = self.chat.channel.lower()
        self.reactor = _Reactor()
        self.connection = self.reactor.server()
        # On a server's RECONNECT: a second connection, made before the first is left, so that
        # nothing said in the chat meanwhile is missed (see _on_reconnect_request).
        self.standby: irc.client.ServerConnection | None = None
        self._standby_by = 0.0
        self._heard: deque[tuple[float, int, str, str]] = deque(maxlen=64)
        handlers = {
            "all_raw_messages": self._on_line,
            "welcome": self._on_welcome,
            "join": self._on_join,
            "pubmsg": self._on_message,
            "passwdmismatch": self._on_login_refused,
            "privnotice": self._on_notice,
            "nicknameinuse": self._on_login_refused,
            "erroneusnickname": self._on_login_refused,
            "reconnect": self._on_reconnect_request,
            "disconnect": self._on_disconnect,
        }
        for event, handler in handlers.items():
            self.connection.add_global_handler(event, handler)
        # Commands wait here for the moderation thread; replies and announcements for their turn.
        self.commands: queue.Queue[tuple[str, str, str]] = queue.Queue(maxsize=pacing.backlog)
        self.replies: deque[str] = deque(maxlen=pacing.replies_waiting)
        self.announcements: deque[_Announcement] = deque()
        self._announcing: set[str] = set()  # request ids waiting in `announcements`
        self.joined = False
        self.stopping = False
        self._next_attempt = 0.0
        self._retry_wait = pacing.first_retry
        self._last_failure = ""  # a failure repeated while the server stays away is logged once
        self._hang_up_reason = ""  # why the bot itself hung up, for the disconnect handler
        self._ready_by: float | None = None
        self._last_heard = 0.0
        self._pinged = False
        self._next_send = 0.0
        self._next_look = 0.0
        self._flood_warned_at = -60.0
        self._look_error = ""
        self._done = threading.Event()  # the moderation thread's stop
        self._refresh_asked_at: float | None = None  # a refused login waits for a new token
        self._told_limited: dict[str, float] = {}  # account: until when it is not told again

    # The reading thread.

    def run(self, stop: threading.Event, stopped: Callable[[], bool] = lambda: False) -> None:
        """Chats until `stop` is set (or `stopped()` is true)."""
        worker = threading.Thread(
            target=self._moderate, name=f"chat-moderation-{self.channel.slug}", daemon=True
        )
        worker.start()
        if self.keeper is not None:
            threading.Thread(
                target=self.keeper.run,
                args=(self._done,),
                name=f"chat-token-{self.channel.slug}",
                daemon=True,
            ).start()
        try:
            while not (stop.is_set() or stopped()):
                self.heartbeat.beat()
                self._step(stop)
        finally:
            self.stopping = True
            self._done.set()
            for connection in (self.connection, self.standby):
                if connection is not None and connection.is_connected():
                    connection.disconnect("the channel's bot is stopping")
            worker.join(timeout=2)  # a judge may still be thinking: the thread is a daemon
            log.info("chat bot of %s stopped", self.channel.slug)

    def _step(self, stop: threading.Event) -> None:
        now = time.monotonic()
        if not self.connection.is_connected():
            if now < self._next_attempt or self._waiting_for_token(now):
                stop.wait(0.2 if now >= self._next_attempt else min(0.2, self._next_attempt - now))
                return
            self._connect(now)
            return
        wait = 0.2
        if self.joined and (self.replies or self.announcements):
            wait = min(wait, max(0.0, self._next_send - now))
        try:
            self.reactor.process_once(timeout=wait)
        except Exception:  # a bug in a handler: start afresh rather than die
            log.exception("chat bot of %s failed on a line from %s", self.channel.slug, self._where)
            self._hang_up("the bot failed on a line from the server")
            return
        if not self.connection.is_connected():
            return
        self._watch(time.monotonic())
        if self.joined:
            self._look_ahead()
            self._send_due()

    def _waiting_for_token(self, now: float) -> bool:
        """Whether a refused login still waits for the keeper's new token (at most the login
        timeout: with Twitch's token service down, the old token is tried again)."""
        if self._refresh_asked_at is None or self.keeper is None:
            return False
        if self.keeper.ready() or now - self._refresh_asked_at > self.pacing.login_timeout:
            self._refresh_asked_at = None
            return False
        return True

    def _open(self, connection: irc.client.ServerConnection) -> None:
        connection.connect(
            self.chat.server, self.chat.port, self.chat.nick, connect_factory=self._connector
        )

    def _connect(self, now: float) -> None:
        self._ready_by, self._last_heard, self._pinged = None, now, False
        self.joined = False
        try:
            self._open(self.connection)
        except irc.client.ServerConnectionError as error:
            cause = error.__cause__ or error
            self._failed(f"cannot connect to {self._where}: {cause}", now)
            return
        self._ready_by = now + self.pacing.login_timeout
        log.debug("chat bot of %s: connection to %s open", self.channel.slug, self._where)

    def _failed(self, failure: str, now: float) -> None:
        """Logs a failure (once while it repeats) and waits before the next attempt."""
        wait = self._retry_wait
        level = logging.DEBUG if failure == self._last_failure else logging.WARNING
        log.log(
            level,
            "chat bot of %s: %s; trying again in %s s",
            self.channel.slug,
            failure,
            f"{wait:g}",
        )
        self._last_failure = failure
        self._next_attempt = now + wait
        self._retry_wait = min(self._retry_wait * 2, self.pacing.last_retry)

    def _hang_up(self, failure: str) -> None:
        self._hang_up_reason = failure  # for the log: the chat sees a plain QUIT
        if self.connection.is_connected():
            self.connection.disconnect("reconnecting")

    def _watch(self, now: float) -> None:
        """Hangs up a login that does not finish, and a server that stays silent."""
        if self.standby is not None and now > self._standby_by:
            self._drop_standby(f"not in {self.chat.channel} within the login timeout")
        if self._ready_by is not None and now > self._ready_by:
            self._hang_up(
                f"not in {self.chat.channel} within {self.pacing.login_timeout:g} s of connecting"
            )
        elif now - self._last_heard > self.pacing.quiet_limit:
            self._hang_up(f"{self._where} silent for {self.pacing.quiet_limit:g} s")
        elif now - self._last_heard > self.pacing.quiet_ping and not self._pinged:
            self.connection.ping(self.chat.server)
            self._pinged = True

    # Server events (on the reading thread).

    def _on_line(self, connection, event) -> None:
        if connection is self.connection:
            self._last_heard, self._pinged = time.monotonic(), False

    def _on_welcome(self, connection, event) -> None:
        log.info(
            "chat bot of %s connected to %s as %s",
            self.channel.slug,
            self._where,
            connection.get_nickname(),
        )
        connection.join(self.chat.channel)

    def _on_join(self, connection, event) -> None:
        mine = bool(event.source) and event.source.nick.lower() == connection.get_nickname().lower()
        if mine and (event.target or "").lower() == self._room and connection is self.standby:
            self._switch_to_standby()
        elif mine and (event.target or "").lower() == self._room:
            self.joined, self._ready_by = True, None
            self._retry_wait, self._last_failure = self.pacing.first_retry, ""
            log.info("chat bot of %s joined %s", self.channel.slug, self.chat.channel)

    def _on_login_refused(self, connection, event) -> None:
        reason = " ".join(event.arguments[-1:]) or event.target or event.type
        if self.keeper is not None:  # expired or revoked: a new token, then a new login
            self.keeper.refresh_now()
            self._refresh_asked_at = time.monotonic()
            failure = f"login refused by {self._where} ({reason}); refreshing the token"
        else:
            failure = (
                f"login refused by {self._where} ({reason}); check the nick "
                f"{self.chat.nick!r} and the token in ${self.chat.token_env}"
            )
        if connection is self.standby:
            self._drop_standby(failure)
        else:
            self._hang_up(failure)

    def _on_notice(self, connection, event) -> None:
        text = " ".join(event.arguments)
        logging_in = not self.joined or connection is self.standby
        if logging_in and any(refusal in text.lower() for refusal in LOGIN_REFUSALS):
            self._on_login_refused(connection, event)

    def _on_reconnect_request(self, connection, event) -> None:
        """Twitch asks its clients to reconnect before a server goes down for maintenance, and
        keeps the connection a while: a second one joins first, then the first is left."""
        if connection is not self.connection or self.standby is not None:
            return
        log.info("chat bot of %s: %s asked to reconnect", self.channel.slug, self._where)
        self.standby = self.reactor.server()
        self._standby_by = time.monotonic() + self.pacing.login_timeout
        try:
            self._open(self.standby)
        except irc.client.ServerConnectionError as error:
            self._drop_standby(f"cannot connect to {self._where}: {error.__cause__ or error}")
            self._hang_up(f"{self._where} asked to reconnect")  # the plain way, then
            self._next_attempt = time.monotonic()

    def _switch_to_standby(self) -> None:
        retired, self.connection, self.standby = self.connection, self.standby, None
        self.joined, self._ready_by, self._last_heard = True, None, time.monotonic()
        log.info("chat bot of %s rejoined %s on a new connection", self.channel.slug, self._room)
        if retired.is_connected():
            retired.disconnect("reconnected")

    def _drop_standby(self, failure: str) -> None:
        standby, self.standby = self.standby, None
        log.warning("chat bot of %s: the second connection failed: %s", self.channel.slug, failure)
        if standby is not None and standby.is_connected():
            standby.disconnect("giving up")

    def _on_disconnect(self, connection, event) -> None:
        if connection is not self.connection:
            if connection is self.standby:
                self._drop_standby("connection lost")
            return  # a connection left after a switch
        was_joined, self.joined = self.joined, False
        if self.stopping:
            return
        reason = " ".join(event.arguments)
        failure = self._hang_up_reason or f"connection to {self._where} lost" + (
            f" ({reason})" if reason else ""
        )
        self._hang_up_reason = ""
        if was_joined:
            self._last_failure = ""  # an outage begins: its first failure is worth a line
        self._failed(failure, time.monotonic())

    def _on_message(self, connection, event) -> None:
        if connection is not self.connection:
            return  # a standby hears the room too: the current connection answers
        if (event.target or "").lower() != self._room or not event.arguments:
            return
        command = ADD_COMMAND.fullmatch(event.arguments[0].strip())
        if command is None:
            return
        nick, idea = event.source.nick, (command["idea"] or "").strip()
        if self._heard_on_another_connection(id(connection), nick, idea):
            return
        if not idea:
            self.replies.append(f"@{nick} {USAGE}")
            return
        try:
            self.commands.put_nowait((nick, chat_account(event.source), idea))
        except queue.Full:  # said at most once a minute
            if time.monotonic() - self._flood_warned_at > 60:
                log.warning(
                    "chat bot of %s: chat flood: %d commands wait for moderation, "
                    "the newest are ignored",
                    self.channel.slug,
                    self.pacing.backlog,
                )
                self._flood_warned_at = time.monotonic()

    def _heard_on_another_connection(self, connection: int, nick: str, idea: str) -> bool:
        """Whether this command already came on the connection a switch left (said while both
        were in the room); a viewer repeating it on one connection is heard each time."""
        now = time.monotonic()
        seen = any(
            other != connection and (n, i) == (nick, idea) and now - at < 10
            for at, other, n, i in self._heard
        )
        self._heard.append((now, connection, nick, idea))
        return seen

    # What the bot says (on the reading thread).

    def _look_ahead(self) -> None:
        """Queues an announcement for each requested clip that airs within announce_seconds and
        was not announced yet."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + self.pacing.announce_every
        wall = time.time()
        try:
            soon = {
                clip.clip_id: clip
                for clip in self._planned(wall)
                if wall - self.pacing.announce_late <= clip.starts_at
                and clip.starts_at <= wall + self.chat.announce_seconds
            }
            made_of = self.requests.of_clips(list(soon))
        except Exception as error:  # the queue is busy or broken: look again later
            if str(error) != self._look_error:
                log.warning(
                    "chat bot of %s cannot read the air plan or the request queue: %s",
                    self.channel.slug,
                    error,
                )
            self._look_error = str(error)
            return
        self._look_error = ""
        for clip_id, request in sorted(made_of.items(), key=lambda item: soon[item[0]].starts_at):
            if request.announced_at is None and request.id not in self._announcing:
                self.announcements.append(_Announcement(request, soon[clip_id].starts_at))
                self._announcing.add(request.id)

    def _planned(self, now: float) -> list[PlannedClip]:
        """The air plan from the playout's state and its last good copy of the playlist."""
        playlist = saved_playlist(PlayoutFolder.of(self.data_dir, self.channel.slug))
        return planned_air(read_state(self.data_dir, self.channel.slug), playlist, now)

    def _send_due(self) -> None:
        now = time.monotonic()
        if now < self._next_send:
            return
        text = self._next_text()
        if text is None:
            return
        self.connection.privmsg(self.chat.channel, one_line(text))
        self._next_send = now + self.pacing.reply_interval

    def _next_text(self) -> str | None:
        """Announcements first (they are few and timely), then replies, oldest first."""
        while self.announcements:
            item = self.announcements.popleft()
            self._announcing.discard(item.request.id)
            wall = time.time()
            if item.starts_at < wall - self.pacing.announce_late:
                continue  # too late to announce
            try:
                self.requests.mark_announced(item.request.id, now=wall)
            except Exception as error:
                log.warning(
                    "chat bot of %s cannot mark request %s announced: %s",
                    self.channel.slug,
                    item.request.id,
                    error,
                )
                continue
            log.info(
                "chat bot of %s announced request %s (clip %s)",
                self.channel.slug,
                item.request.id,
                item.request.clip_id,
            )
            return announcement(item.request, item.starts_at, wall)
        try:
            return self.replies.popleft()
        except IndexError:
            return None

    # The moderation thread.

    def _moderate(self) -> None:
        while not self._done.is_set():
            try:
                nick, account, idea = self.commands.get(timeout=0.5)
            except queue.Empty:
                continue
            status, message = self._submit(nick, account, idea)
            if status == "rate_limited":
                # A flooder is told once a window, so that the bot's own message budget (20 in
                # 30 s on Twitch) goes to everyone else's answers.
                now = time.monotonic()
                if now < self._told_limited.get(account, 0.0):
                    continue
                self._told_limited[account] = now + FLOODER_TOLD_EVERY_SECONDS
                if len(self._told_limited) > 1000:  # bounded: forget those told long ago
                    self._told_limited = {
                        a: until for a, until in self._told_limited.items() if until > now
                    }
            self.replies.append(f"@{nick} {message}")

    def _submit(self, nick: str, account: str, idea: str) -> tuple[str, str]:
        """Queues the idea; returns its status and what to answer."""
        try:
            answer = self.requests.submit(
                self.channel,
                idea,
                nick,
                source="chat",
                client=account,
                moderators=self.moderators,
            )
        except Exception as error:
            log.error("chat bot of %s could not queue a request: %s", self.channel.slug, error)
            return "error", NOT_TAKEN
        if answer.request_id is not None:
            log.info(
                "chat bot of %s: request %s %s", self.channel.slug, answer.request_id, answer.status
            )
        else:  # flood refusals are not stored: no id
            log.debug(
                "chat bot of %s: a request was not taken (%s)", self.channel.slug, answer.status
            )
        return answer.status, answer.message


def token_keeper(
    channel: Channel, chat: ChatBot, environ: Mapping[str, str], data_dir: Path, token: str
) -> TokenKeeper:
    """The keeper of a bot whose channel names its Twitch application (`chat.refresh`), with
    the newest tokens kept in the data folder or, for a new authorization, the environment's."""
    refresh = chat.refresh
    secrets = {}
    for name, what in (
        (refresh.client_secret_env, "the application's client secret"),
        (refresh.refresh_token_env, "the bot's refresh token"),
    ):
        secrets[name] = environ.get(name, "").strip()
        if not secrets[name] or not secrets[name].isprintable() or " " in secrets[name]:
            raise ChatBotConfigError(
                f"the chat bot of channel {channel.slug!r} refreshes its token with {what} in "
                f"the environment variable {name}, which is unset, empty or holds spaces: set "
                "it (docs/viewer-requests.md#connecting-a-real-twitch-channel)"
            )
    store = token_path(data_dir, channel.slug)
    grant = load_grant(store, token.removeprefix("oauth:"), secrets[refresh.refresh_token_env])
    return TokenKeeper(channel.slug, refresh, secrets[refresh.client_secret_env], grant, store)


@contextlib.contextmanager
def _sigterm_noted() -> Iterator[Callable[[], bool]]:
    """While the bot runs in the main thread, SIGTERM is noted in a flag (the handler does not
    set an Event: it would deadlock if it ran while the main thread held the Event's lock);
    yields whether it came."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_chat_bot(
    channel: Channel,
    models: Mapping[str, ModelEndpoint],
    data_dir: Path,
    stop: threading.Event,
    environ: Mapping[str, str] | None = None,
    *,
    pacing: ChatPacing | None = None,
    tls_context: ssl.SSLContext | None = None,
    notify_socket: str = "",
) -> None:
    """Runs the channel's chat bot until `stop` is set (or SIGTERM, in the main thread).
    Raises ChatBotConfigError when the channel has no `requests.chat` or its token variable is
    unset. The token is read from `environ` (default: this process's environment); `pacing`
    defaults to Twitch's with the channel's `reply_interval_seconds`; `tls_context` replaces
    the system's trusted certificates (tests)."""
    chat = chat_settings(channel)
    pacing = pacing or ChatPacing(reply_interval=chat.reply_interval_seconds)
    if environ is None:
        environ = {name: named_secret(name) or "" for name in chat.secret_variables}
    token = read_token(channel, environ)
    if chat.refresh is not None:
        token = token_keeper(channel, chat, environ, data_dir, token)
    if not channel.requests.enabled:
        log.warning(
            "channel %s does not take requests (requests.enabled is false): its chat "
            "bot will say so to every !add",
            channel.slug,
        )
    bot = ChannelChatBot(
        channel,
        build_moderators(channel, models),
        RequestQueue(queue_path(data_dir)),
        data_dir,
        token,
        pacing,
        tls_context,
        notify_socket,
    )
    with _sigterm_noted() as terminated:
        bot.run(stop, terminated)
    if terminated():
        log.info("chat bot of %s stopped by SIGTERM", channel.slug)
        stop.set()
