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
    """miniircd on a loopback port; the password comes from a file, not its command line."""

    def __init__(self, folder: Path, tls: tuple[Path, Path] | None = None):
        self.port = free_port_block(1)
        self.password_file = folder / "irc-password"
        self.password_file.write_text(TOKEN + "\n")
        self.tls = tls
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "miniircd",
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

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop_process(self.process, timeout=5)


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
