"""miniircd made to behave as Twitch's chat does where the chat bot's tests need it:

- the connection passwords (tokens: one per line of its file, the viewers' and the bot's) are read
  at each login, so that a test whose OAuth stand-in issues the bot a new token (and writes it
  there) expires the old one: a login with it is refused (464), while connections already
  logged in stay;
- an account may be logged in on several connections at once (no nick is ever "in use");
- SIGUSR1 sends every client Twitch's `RECONNECT` (what Twitch says before a server goes down).

Run as miniircd is: `python twitch_like_ircd.py --password-file F --ports P ...`.
"""

import signal
from pathlib import Path

import miniircd


class AnyOf(str):
    """The passwords of the file, as miniircd compares one: `PASS x` is accepted when
    `x == server.password.encode()`, which bytes leave to this object's __eq__."""

    def encode(self, *args) -> "AnyOf.Tokens":
        return AnyOf.Tokens(line.encode() for line in self.splitlines() if line)

    class Tokens(frozenset):
        def __eq__(self, other) -> bool:
            return other in self

        __hash__ = frozenset.__hash__


class TwitchLikeServer(miniircd.Server):
    running: "TwitchLikeServer | None" = None

    def __init__(self, args, ports):
        self._password_file: Path = args.password_file
        super().__init__(args, ports)
        TwitchLikeServer.running = self

    @property
    def password(self) -> str:
        return AnyOf(self._password_file.read_text())

    @password.setter
    def password(self, value: str) -> None:
        pass  # always the file's, read at each login

    def get_client(self, nickname):
        return None  # Twitch lets an account connect many times over


def send_reconnect(signum, frame) -> None:
    # Straight to the sockets: the server's loop may sit in select() for seconds, and would only
    # then flush a client's write buffer.
    for client in list(TwitchLikeServer.running.clients.values()):
        try:
            client.socket.send(b":tmi.twitch.tv RECONNECT\r\n")
        except OSError:
            pass


if __name__ == "__main__":
    miniircd.Server = TwitchLikeServer
    signal.signal(signal.SIGUSR1, send_reconnect)
    miniircd.main()
