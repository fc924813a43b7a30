"""A real IRC server (miniircd on a free loopback port, with a connection password) and a viewer
on a raw socket who joins the room, types commands and reads what the bot says there: for the
chat bot's tests and the whole stack's."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from webtv_dagster_tests.servers import free_port_block, stop_process

SECRET = "SECRET-TOKEN-123"
TOKEN = f"oauth:{SECRET}"  # what the server expects after PASS
BOT, ROOM = "webtvbot", "#llamachat"


# The IRC server.


class IrcServer:
    """miniircd on a loopback port; the password comes from a file, not its command line.
    `twitch_like`: twitch_like_ircd.py's (tokens that expire, RECONNECT on `reconnect()`)."""

    def __init__(
        self, folder: Path, tls: tuple[Path, Path] | None = None, twitch_like: bool = False
    ):
        self.port = free_port_block(1)
        self.password_file = folder / "irc-password"
        self.password_file.write_text(TOKEN + "\n")
        self.tls = tls
        self.twitch_like = twitch_like
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        server = [str(Path(__file__).with_name("twitch_like_ircd.py"))]
        command = [
            sys.executable,
            *(server if self.twitch_like else ["-m", "miniircd"]),
            "--listen",
            "127.0.0.1",
            "--ports",
            str(self.port),
            "--password-file",
            str(self.password_file),
        ]
        if os.geteuid() == 0:  # miniircd refuses root unless told
            command += ["--setuid", "root"]
        if self.tls:
            command += ["--ssl-cert-file", str(self.tls[0]), "--ssl-key-file", str(self.tls[1])]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            assert self.process.poll() is None, "miniircd exited at start"
            assert time.monotonic() < deadline, f"miniircd did not listen on {self.port}"
            time.sleep(0.05)

    def reconnect(self) -> None:
        """Twitch's RECONNECT to every client (twitch_like only)."""
        self.process.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process, timeout=5)


# Twitch's token service.


class TwitchAuth:
    """A stand-in for id.twitch.tv's /oauth2/token (the refresh-token grant) and
    /oauth2/validate, on a loopback port. Each refresh issues `live-N` for `lifetime` seconds
    and a new refresh token `refresh-N`, and writes the new token into the IRC server's password
    file beside the viewers' TOKEN: the token before it no longer logs in (expired).
    `revoke()` expires the token in use without a new one, as a revocation does."""

    CLIENT_ID, CLIENT_SECRET = "webtvtestapp", "client-secret-456"

    def __init__(self, irc: IrcServer, lifetime: float):
        import http.server
        import json
        import urllib.parse

        self.irc, self.lifetime = irc, lifetime
        self.access, self.refresh, self.issued_at, self.serial = "", "refresh-0", 0.0, 0
        self.refreshed_at: list[tuple[float, float]] = []  # (when, the old token's expiry)
        self.refused = 0
        auth = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                token = self.headers.get("Authorization", "").removeprefix("OAuth ")
                left = auth.issued_at + auth.lifetime - time.time()
                if self.path != "/oauth2/validate" or token != auth.access or left <= 0:
                    return self._answer(401, {"status": 401, "message": "invalid access token"})
                self._answer(200, {"client_id": auth.CLIENT_ID, "expires_in": int(left)})

            def do_POST(self):
                form = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                said = dict(urllib.parse.parse_qsl(form))
                wanted = {
                    "grant_type": "refresh_token",
                    "refresh_token": auth.refresh,
                    "client_id": auth.CLIENT_ID,
                    "client_secret": auth.CLIENT_SECRET,
                }
                if self.path != "/oauth2/token" or said != wanted:
                    auth.refused += 1
                    return self._answer(400, {"status": 400, "message": "Invalid refresh token"})
                auth.refreshed_at.append((time.time(), auth.issued_at + auth.lifetime))
                auth.issue()
                self._answer(
                    200,
                    {
                        "access_token": auth.access,
                        "refresh_token": auth.refresh,
                        "expires_in": auth.lifetime,
                        "token_type": "bearer",
                    },
                )

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self) -> None:
        self.serial += 1
        self.access, self.refresh = f"live-{self.serial}", f"refresh-{self.serial}"
        self.issued_at = time.time()
        self.irc.password_file.write_text(f"{TOKEN}\noauth:{self.access}\n")

    def revoke(self) -> None:
        """The token in use stops logging in, and is no longer valid."""
        self.access = "revoked"
        self.irc.password_file.write_text(f"{TOKEN}\n")

    def refresh_settings(self) -> dict:
        """A channel's `requests.chat.refresh` that calls this stand-in."""
        return {
            "client_id": self.CLIENT_ID,
            "token_url": f"{self.url}/token",
            "validate_url": f"{self.url}/validate",
        }

    def environment(self) -> dict[str, str]:
        return {
            "WEBTV_TWITCH_CLIENT_SECRET": self.CLIENT_SECRET,
            "WEBTV_TWITCH_REFRESH_TOKEN": "refresh-0",
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# The viewer.


class Viewer:
    """An IRC client on a raw socket, in the room: it says lines and keeps every line it reads,
    with the time it read it."""

    def __init__(self, port: int, nick: str, tls: ssl.SSLContext | None = None):
        self.nick = nick
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.sock.settimeout(0.2)
        self.lines: list[tuple[float, str]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(f"PASS {TOKEN}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda: self.find(r"^:\S+ 001 "), "the welcome")
        self.send(f"JOIN {ROOM}")
        self.wait_for(lambda: self.find(r"^:\S+ 366 "), "the end of the room's names")

    def _read(self) -> None:
        pending = b""
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return
            if not data:
                return
            pending += data
            *complete, pending = pending.split(b"\r\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                if line.startswith("PING "):
                    self.send("PONG " + line[5:])
                self.lines.append((time.monotonic(), line))

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def say(self, text: str) -> None:
        self.send(f"PRIVMSG {ROOM} :{text}")

    def find(self, pattern: str) -> list[re.Match]:
        return [m for _, line in list(self.lines) if (m := re.search(pattern, line))]

    def said_by(self, nick: str) -> list[tuple[float, str]]:
        """What `nick` said in the room, with when it was read."""
        prefix = f":{nick}!"
        return [
            (at, line.split(" :", 1)[1])
            for at, line in list(self.lines)
            if line.startswith(prefix) and f" PRIVMSG {ROOM} :" in line
        ]

    def answers(self) -> list[str]:
        """The bot's replies to this viewer."""
        return [text for _, text in self.said_by(BOT) if text.startswith(f"@{self.nick} ")]

    def ask(self, text: str) -> str:
        """Says `text` and returns the bot's reply to it (without the @nick)."""
        before = len(self.answers())
        self.say(text)
        self.wait_for(lambda: len(self.answers()) > before, f"the bot's reply to {text!r}")
        return self.answers()[before].split(" ", 1)[1]

    def bot_is_here(self) -> bool:
        joined = self.find(rf"^:{BOT}!\S+ JOIN :?{ROOM}$")
        listed = self.find(rf"^:\S+ 353 .*[ :@+]{BOT}( |$)")
        quits = self.find(rf"^:{BOT}!\S+ (QUIT|PART)")
        return bool(joined or listed) and not quits

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{self.nick} waited {timeout} s for {what}"
            time.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def viewer(port: int, nick: str, tls: ssl.SSLContext | None = None) -> Iterator[Viewer]:
    client = Viewer(port, nick, tls)
    try:
        yield client
    finally:
        client.close()


def chat_requests(port: int) -> dict:
    """A channel's `requests:` in a channels file: auto-approved, with a chat bot in ROOM of the
    IRC server on `port`, its token in WEBTV_TWITCH_TOKEN."""
    return {
        "enabled": True,
        "approval": "auto",
        "chat": {
            "server": "127.0.0.1",
            "port": port,
            "tls": False,
            "channel": ROOM,
            "nick": BOT,
            "token_env": "WEBTV_TWITCH_TOKEN",
            "reply_interval_seconds": 0.3,
        },
    }
