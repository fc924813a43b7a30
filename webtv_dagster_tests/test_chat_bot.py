"""The channel's chat bot against a real IRC server: miniircd, started by each test on a free
loopback port with a connection password, and a viewer on a raw socket who joins the room, types
commands and reads what the bot says there."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webtv_dagster.audience.chat_bot import ChatBotConfigError, ChatPacing, read_token, run_chat_bot
from webtv_dagster.channels import ChatBot
from webtv_dagster.clips import ClipId
from webtv_dagster.model_endpoints import OpenAIEndpoint
from webtv_dagster.playout.playlist import Playlist, PlaylistEntry
from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, ScheduledClip
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import RequestQueue
from webtv_dagster_tests.servers import stop_process

from .fake_llm import FakeLLM
from .irc import BOT, ROOM, SECRET, TOKEN, IrcServer, TwitchAuth, Viewer, chat_requests, viewer
from .servers import self_signed_certificate

FAST = ChatPacing(reply_interval=0.2, announce_every=0.5, first_retry=0.5, last_retry=2)
KITE = "a llama flying a red kite"


# The bot.


def chat_channel(
    channel,
    port: int,
    tls: bool = False,
    announce_seconds: float = 30,
    refresh: dict | None = None,
    **policy,
):
    """The test channel with requests on (auto approval) and its chat on the test server."""
    chat = ChatBot(
        server="localhost" if tls else "127.0.0.1",
        port=port,
        tls=tls,
        channel=ROOM,
        nick=BOT,
        announce_seconds=announce_seconds,
        refresh=refresh,
    )
    settings = {
        "enabled": True,
        "approval": "auto",
        "blocked_words": ["broccoli"],
        "chat": chat,
        **policy,
    }
    return channel.model_copy(update={"requests": channel.requests.model_copy(update=settings)})


@contextlib.contextmanager
def bot_running(
    channel,
    data_dir: Path,
    token: str = TOKEN,
    pacing: ChatPacing = FAST,
    tls=None,
    models=None,
    environ: dict[str, str] | None = None,
) -> Iterator[threading.Thread]:
    """The bot on a thread (its environment: the token, and `environ`), stopped by its stop
    event at the end."""
    stop, failures = threading.Event(), []

    def run() -> None:
        try:
            run_chat_bot(
                channel,
                models or {},
                data_dir,
                stop,
                {"WEBTV_TWITCH_TOKEN": token, **(environ or {})},
                pacing=pacing,
                tls_context=tls,
            )
        except BaseException as error:
            failures.append(error)
            raise

    thread = threading.Thread(target=run, name="chat-bot-under-test", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "the bot did not stop within 10 s of its stop event"
    assert not failures, failures


def approved(data_dir: Path, slug: str):
    return RequestQueue(queue_path(data_dir)).listed(slug, ["approved"])


# The tests.


def test_an_idea_typed_in_the_chat_is_queued_and_answered(irc_server, llama_channel, tmp_path):
    channel = chat_channel(llama_channel, irc_server.port)
    with viewer(irc_server.port, "ann") as ann, bot_running(channel, tmp_path):
        ann.wait_for(ann.bot_is_here, "the bot")
        assert ann.ask(f"!add {KITE}") == "Thanks! Your idea is in the queue."
        (request,) = approved(tmp_path, channel.slug)
        assert (request.idea, request.requester, request.source) == (KITE, "ann", "chat")
        # Other lines are not commands; a bare !add gets the usage, in one line.
        ann.say("hello llamas")
        ann.say("!additional thoughts")
        usage = ann.ask("!add   ")
        assert usage.startswith("type !add and your idea") and len(ann.answers()) == 2
        assert ann.ask("!ADD the llama repairing a bicycle").startswith("Thanks!")
    assert len(approved(tmp_path, channel.slug)) == 2


def test_refusals_and_bounds_are_answered_politely(irc_server, llama_channel, tmp_path):
    channel = chat_channel(llama_channel, irc_server.port, per_client=3, max_queue=3)
    with (
        viewer(irc_server.port, "ann") as ann,
        viewer(irc_server.port, "bob") as bob,
        bot_running(channel, tmp_path),
    ):
        ann.wait_for(ann.bot_is_here, "the bot")
        assert ann.ask("!add a llama eating broccoli") == (
            "Sorry, not this one: it contains 'broccoli', which this channel does not show."
        )
        assert "painted into the picture" in ann.ask("!add the llama holding a LOGO sign")
        assert ann.ask(f"!add {KITE}").startswith("Thanks!")
        limited = ann.ask("!add the llama baking bread")  # the 4th within the window
        assert limited.startswith("You have sent 3 ideas lately; try again in ")
        # Another nick on the same connection is the same viewer (once, 9 ideas got through):
        # not queued (bob's two below fill the queue of 3), and not told again so soon.
        ann.send("NICK annagain")
        ann.wait_for(lambda: ann.find(r" NICK :?annagain$"), "the new nick")
        ann.nick = "annagain"
        ann.say("!add the llama baking a pie")
        time.sleep(1.5)
        assert ann.answers() == []
        assert bob.ask("!add the llama painting a mural").startswith("Thanks!")
        assert bob.ask("!add the llama on a cobblestone street").startswith("Thanks!")
        assert bob.ask("!add the llama in a bakery") == (
            "The queue is full (3 ideas waiting); try again later."
        )
    queue = RequestQueue(queue_path(tmp_path))
    assert len(queue.listed(channel.slug, ["approved"])) == 3
    assert len(queue.listed(channel.slug, ["refused"])) == 2


def test_a_slow_judge_does_not_stop_the_bot_reading(irc_server, llama_channel, tmp_path):
    llm = FakeLLM('{"allowed": true, "reason": "fun"}')
    llm.delay_seconds = 3
    models = {"judge": OpenAIEndpoint(kind="openai", base_url=llm.base_url, model="judge")}
    channel = chat_channel(llama_channel, irc_server.port, judge="judge")
    try:
        with viewer(irc_server.port, "ann") as ann, bot_running(channel, tmp_path, models=models):
            ann.wait_for(ann.bot_is_here, "the bot")
            ann.say(f"!add {KITE}")
            ann.wait_for(lambda: llm.requests, "the judge to be asked")
            asked = time.monotonic()
            assert ann.ask("!add").startswith("type !add")  # while the judge thinks
            assert time.monotonic() - asked < 2
            ann.wait_for(lambda: len(ann.answers()) == 2, "the judge's verdict")
            assert ann.answers()[1] == "@ann Thanks! Your idea is in the queue."
    finally:
        llm.close()
    (request,) = approved(tmp_path, channel.slug)
    assert request.decided_by == "auto approval" and KITE in str(llm.requests[0]["messages"])


def write_air(data_dir: Path, channel, now: float, schedule: list, playlist: list) -> None:
    """A playout state (clips queued to the publisher) and its copy of the playlist."""

    def entry(clip_id: str, seconds: float) -> dict:
        return {"clip_id": clip_id, "prompt": f"the shot of {clip_id}", "duration_seconds": seconds}

    state = PlayoutState(
        channel=channel.slug,
        title=channel.title,
        publisher_started_at=now - 60,
        updated_at=now,
        aired_through=ClipId.parse(schedule[-1][0]).number,
        unplayed_seconds=100,
        schedule=[
            ScheduledClip(
                **entry(clip_id, seconds), starts_at=starts_at, stream_seconds=starts_at - now + 60
            )
            for clip_id, starts_at, seconds in schedule
        ],
        up_next=[],
    )
    folder = PlayoutFolder.of(data_dir, channel.slug)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.state.write_text(state.model_dump_json())
    entries = [
        PlaylistEntry(
            **entry(clip_id, seconds),
            seed=1,
            uri=f"s3://media/{clip_id}.mp4",
            path=f"clips/{clip_id}/broadcast.mp4",
        )
        for clip_id, seconds in playlist
    ]
    folder.playlist.write_text(
        Playlist(channel=channel.slug, title=channel.title, entries=entries).model_dump_json()
    )


def test_a_requested_clip_is_announced_once_before_it_airs(irc_server, llama_channel, tmp_path):
    channel = chat_channel(
        llama_channel, irc_server.port, announce_seconds=30, share=1.0, per_client=10
    )
    queue = RequestQueue(queue_path(tmp_path))
    ideas = {
        10: "the llama juggling oranges",
        11: KITE,
        12: "the llama knitting a scarf",
        13: "the llama riding a tram",
    }
    requests = {}
    for number, idea in ideas.items():
        answer = queue.submit(channel, idea, f"viewer{number}", "web", f"client{number}", [])
        assert answer.status == "approved"
        claimed = queue.claim(channel, ClipId(channel=channel.slug, number=number))
        assert claimed.id == answer.request_id
        requests[number] = claimed
    key = {number: f"{channel.slug}-{number:06d}" for number in ideas}
    now = time.time()
    # Clip 10 aired already; 11 is queued to the publisher and starts in 20 s; 12 follows it in
    # the playlist (in ~22.7 s); 13 after 12's minute: too far ahead to announce yet.
    write_air(
        tmp_path,
        channel,
        now,
        schedule=[(key[10], now - 30, 2.6667), (key[11], now + 20, 2.6667)],
        playlist=[(key[11], 2.6667), (key[12], 60.0), (key[13], 2.6667)],
    )

    def announcements(ann: Viewer) -> list[str]:
        return [text for _, text in ann.said_by(BOT) if not text.startswith("@")]

    with viewer(irc_server.port, "ann") as ann:
        with bot_running(channel, tmp_path):
            ann.wait_for(lambda: len(announcements(ann)) >= 2, "two announcements")
            time.sleep(2)  # several looks at the air plan
        first, second = announcements(ann)
        assert re.fullmatch(rf"Up next in ~(1[5-9]|20) s: {KITE}, requested by viewer11", first)
        assert re.fullmatch(
            r"Up next in ~(1[89]|2[0-3]) s: the llama knitting a scarf, "
            r"requested by viewer12",
            second,
        )
        # A restarted bot does not say it again.
        with bot_running(channel, tmp_path):
            ann.wait_for(lambda: len(ann.find(rf"^:{BOT}!\S+ JOIN")) == 2, "the bot's return")
            time.sleep(2.5)
        assert announcements(ann) == [first, second]
    announced = {n: queue.get(requests[n].id).announced_at for n in ideas}
    assert announced[11] and announced[12] and not announced[10] and not announced[13]


def test_the_bot_reconnects_after_the_server_was_killed(
    irc_server, llama_channel, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="webtv_dagster.audience.chat_bot")
    channel = chat_channel(llama_channel, irc_server.port, per_client=10)
    with bot_running(channel, tmp_path):
        with viewer(irc_server.port, "ann") as ann:
            ann.wait_for(ann.bot_is_here, "the bot")
            assert ann.ask(f"!add {KITE}").startswith("Thanks!")
        irc_server.kill()
        time.sleep(3)  # the bot tries, with backoff, and is refused
        irc_server.start()
        with viewer(irc_server.port, "ann") as ann:
            ann.wait_for(ann.bot_is_here, "the bot's return", timeout=20)
            assert ann.ask("!add the llama baking bread").startswith("Thanks!")
    assert len(approved(tmp_path, channel.slug)) == 2
    records = [r for r in caplog.records if r.name == "webtv_dagster.audience.chat_bot"]
    assert sum("connected to" in r.getMessage() for r in records) == 2
    refused = [r for r in records if "cannot connect" in r.getMessage()]
    warned = [r for r in refused if r.levelno == logging.WARNING]
    assert len(warned) == 1 and len(refused) >= 2, [r.getMessage() for r in refused]
    assert "Connection refused" in warned[0].getMessage()
    assert not [r for r in records if r.exc_info], "a failure was logged with a traceback"


def test_the_bot_refreshes_its_token_itself_before_and_after_it_expires(
    llama_channel, tmp_path, caplog
):
    """Tokens of 4 s from a stand-in of Twitch's token service, whose each refresh expires the
    token before it at the IRC server. The bot starts with a spent token (refreshed at once),
    refreshes ahead of each expiry, gets back in by itself after a revoked token and a server
    restart, and a restarted bot goes on from the refresh token it kept (the environment's is
    spent); no token is ever logged."""
    caplog.set_level(logging.DEBUG)
    irc = IrcServer(tmp_path, twitch_like=True)
    auth = TwitchAuth(irc, lifetime=4)
    channel = chat_channel(llama_channel, irc.port, refresh=auth.refresh_settings(), per_client=10)
    data_dir = tmp_path / "data"
    try:
        with (
            viewer(irc.port, "ann") as ann,
            bot_running(channel, data_dir, "oauth:spent-1", environ=auth.environment()),
        ):
            ann.wait_for(ann.bot_is_here, "the bot, on a refreshed token", timeout=20)
            assert ann.ask(f"!add {KITE}").startswith("Thanks!")
            time.sleep(9)  # two more tokens' lives
            # Each refresh after the first came before the token it replaced expired.
            assert len(auth.refreshed_at) >= 3, auth.refreshed_at
            assert all(when < expiry for when, expiry in auth.refreshed_at[1:]), auth.refreshed_at
            auth.revoke()  # the token in use stops logging in ...
            irc.kill()  # ... and the server goes down: the bot must log in again
            irc.start()
            refreshes = len(auth.refreshed_at)
        with viewer(irc.port, "bob") as bob:
            with bot_running(channel, data_dir, "oauth:spent-1", environ=auth.environment()):
                bob.wait_for(bob.bot_is_here, "the bot, restarted", timeout=20)
                assert bob.ask("!add the llama baking bread").startswith("Thanks!")
        assert len(auth.refreshed_at) > refreshes
        assert auth.refused == 0  # never a spent refresh token: the kept one, after a restart
        kept = data_dir / "chat" / channel.slug / "token.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert auth.refresh in kept.read_text()
    finally:
        auth.close()
        irc.stop()
    assert len(approved(data_dir, channel.slug)) == 2
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "token refreshed" in logged
    for secret in ("live-", "refresh-", auth.CLIENT_SECRET, "spent-1"):
        assert secret not in logged, secret


def test_a_server_asking_to_reconnect_misses_no_command(llama_channel, tmp_path, caplog):
    """Twitch's RECONNECT while a viewer types a command every 20 ms: the bot joins on a second
    connection before it leaves the first, and every command is queued once."""
    caplog.set_level(logging.INFO, logger="webtv_dagster.audience.chat_bot")
    irc = IrcServer(tmp_path, twitch_like=True)
    channel = chat_channel(llama_channel, irc.port, per_client=100, max_queue=100)
    ideas = [f"a llama juggling {n} oranges" for n in range(40)]
    try:
        with viewer(irc.port, "ann") as ann, bot_running(channel, tmp_path):
            ann.wait_for(ann.bot_is_here, "the bot")
            for n, idea in enumerate(ideas):
                if n == 10:
                    irc.reconnect()
                ann.say(f"!add {idea}")
                time.sleep(0.02)
            ann.wait_for(lambda: len(approved(tmp_path, channel.slug)) >= 40, "40 requests")
            time.sleep(1)  # any duplicate arrives meanwhile
            seen = [line for _, line in ann.lines if line.startswith(f":{BOT}!")]
    finally:
        irc.stop()
    queued = sorted(r.idea for r in approved(tmp_path, channel.slug))
    assert queued == sorted(ideas)
    # ann saw the bot join, join again, and only then leave its first connection.
    moves = [line.split()[1] for line in seen if line.split()[1] in ("JOIN", "QUIT")]
    assert moves == ["JOIN", "JOIN", "QUIT"], seen
    assert "rejoined" in caplog.text and "asked to reconnect" in caplog.text


def test_a_server_that_never_answers_is_left_and_tried_again(llama_channel, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="webtv_dagster.audience.chat_bot")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    first_lines: list[bytes] = []
    done = threading.Event()

    def accept() -> None:  # reads what a client says first, and never answers
        held = []
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                client, _ = listener.accept()
                client.settimeout(2)
                first_lines.append(client.recv(4096).split(b"\r\n")[0])
                held.append(client)
        for client in held:
            client.close()

    server = threading.Thread(target=accept, daemon=True)
    server.start()
    channel = chat_channel(llama_channel, listener.getsockname()[1])
    pacing = ChatPacing(login_timeout=1, first_retry=0.5, last_retry=0.5)
    try:
        with bot_running(channel, tmp_path, pacing=pacing):
            deadline = time.monotonic() + 10
            while len(first_lines) < 2:
                assert time.monotonic() < deadline, "the bot did not try again"
                time.sleep(0.05)
    finally:
        done.set()
        server.join(timeout=5)
        listener.close()
    assert first_lines[:2] == [f"PASS {TOKEN}".encode()] * 2  # the first line, each time
    gave_up = [r for r in caplog.records if "not in #llamachat within 1 s" in r.getMessage()]
    assert gave_up and gave_up[0].levelno == logging.WARNING


@contextlib.contextmanager
def ann_floods(irc_server, channel, data_dir: Path, commands: int) -> Iterator[tuple]:
    """The bot (a reply every 0.5 s) in a room where ann has just sent `commands` !add at
    once, and bob waits; yields the two viewers."""
    pacing = ChatPacing(reply_interval=0.5, first_retry=0.5)
    with (
        viewer(irc_server.port, "ann") as ann,
        viewer(irc_server.port, "bob") as bob,
        bot_running(channel, data_dir, pacing=pacing),
    ):
        ann.wait_for(ann.bot_is_here, "the bot")
        ann.send(
            *(f"PRIVMSG {ROOM} :!add the llama flying kite number {n}" for n in range(commands))
        )
        yield ann, bob


def test_a_flood_of_commands_neither_drops_the_bot_nor_outpaces_it(
    irc_server, llama_channel, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="webtv_dagster.audience.chat_bot")
    channel = chat_channel(llama_channel, irc_server.port, per_client=100, max_queue=5)
    with ann_floods(irc_server, channel, tmp_path, 200) as (ann, bob):
        # Replies keep their pace: 20 wait at most (the oldest are dropped), so the 200 get
        # about 20 answers, not 200 that would take 100 s.
        ann.wait_for(
            lambda: ann.answers() and time.monotonic() - ann.said_by(BOT)[-1][0] > 2,
            "the replies to end",
            timeout=60,
        )
        assert 20 <= len(ann.answers()) <= 30, len(ann.answers())
        times = [at for at, _ in ann.said_by(BOT)]
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        # One message every 0.5 s at most (as read by the viewer: give or take its jitter).
        assert min(gaps) > 0.3 and sum(gaps) / len(gaps) > 0.48, gaps
        assert ann.answers()[-1].endswith("The queue is full (5 ideas waiting); try again later.")
        # Still connected, still answering.
        assert bob.ask("!add the llama painting a mural").startswith("The queue is full")
        assert ann.bot_is_here()
    assert len(approved(tmp_path, channel.slug)) == 5
    assert sum("connected to" in r.getMessage() for r in caplog.records) == 1


def test_a_flooder_is_told_once_and_others_are_answered_first(irc_server, llama_channel, tmp_path):
    """50 commands from one viewer over their limit of 3: the flooder reads 3 answers and one
    "you have sent 3 ideas lately" (each further reply once spent the bot's message budget on
    them), and another viewer's answer comes within seconds."""
    channel = chat_channel(llama_channel, irc_server.port, per_client=3)
    with ann_floods(irc_server, channel, tmp_path, 50) as (ann, bob):
        time.sleep(1)
        asked = time.monotonic()
        assert bob.ask("!add the llama painting a mural").startswith("Thanks!")
        assert time.monotonic() - asked < 5
        time.sleep(2)
        answers = [answer.split(" ", 1)[1] for answer in ann.answers()]
    assert sum(a.startswith("Thanks!") for a in answers) == 3, answers
    assert sum(a.startswith("You have sent 3 ideas lately") for a in answers) == 1, answers


def test_the_bot_speaks_tls_and_checks_the_certificate(llama_channel, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="webtv_dagster.audience.chat_bot")
    cert, key = self_signed_certificate(tmp_path, "localhost")
    server = IrcServer(tmp_path, tls=(cert, key))
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        channel = chat_channel(llama_channel, server.port, tls=True)
        # The system's authorities do not know the test certificate: refused, said once.
        with bot_running(channel, tmp_path / "untrusting", tls=None):
            time.sleep(2.5)
        failures = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
        assert len(failures) >= 2 and "CERTIFICATE_VERIFY_FAILED" in failures[0]
        assert [r.levelno for r in caplog.records if "cannot connect" in r.getMessage()][:2] == [
            logging.WARNING,
            logging.DEBUG,
        ]
        with viewer(server.port, "ann", tls=trusted) as ann:
            assert not ann.bot_is_here()
            with bot_running(channel, tmp_path, tls=trusted):
                ann.wait_for(ann.bot_is_here, "the bot")
                assert ann.ask(f"!add {KITE}").startswith("Thanks!")
    finally:
        server.stop()


def process_list() -> str:
    """Every process's command line."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(lines)


def test_the_token_is_never_logged_said_or_listed(irc_server, llama_channel, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # the irc library's own log of every line too
    channel = chat_channel(llama_channel, irc_server.port)
    # A wrong token: refused by the server, said once, the token nowhere.
    with bot_running(channel, tmp_path, token="oauth:WRONG-TOKEN-456"):
        time.sleep(2.5)
    refusals = [
        r
        for r in caplog.records
        if r.name == "webtv_dagster.audience.chat_bot" and "login refused" in r.getMessage()
    ]
    assert len(refusals) >= 2 and [r.levelno for r in refusals][:2] == [30, 10]
    assert "$WEBTV_TWITCH_TOKEN" in refusals[0].getMessage()
    # The right one, bare (the bot adds Twitch's oauth:), through a request.
    with viewer(irc_server.port, "ann") as ann, bot_running(channel, tmp_path, token=SECRET):
        ann.wait_for(ann.bot_is_here, "the bot")
        assert ann.ask(f"!add {KITE}").startswith("Thanks!")
        listed = process_list()
        said = "\n".join(line for _, line in ann.lines)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert "TO SERVER: NICK webtvbot" in logged  # the library's log was captured ...
    for secret in (SECRET, "WRONG-TOKEN-456"):  # ... and holds no token
        assert secret not in logged and secret not in said and secret not in listed
    assert "miniircd" in listed


def test_missing_settings_are_typed_errors_that_say_what_to_do(llama_channel):
    stop = threading.Event()
    with pytest.raises(ChatBotConfigError, match="has no chat bot: add 'requests:"):
        run_chat_bot(llama_channel, {}, Path("/nonexistent"), stop, {})
    channel = chat_channel(llama_channel, 6697)
    with pytest.raises(ChatBotConfigError, match="variable WEBTV_TWITCH_TOKEN, which is unset"):
        run_chat_bot(channel, {}, Path("/nonexistent"), stop, {"OTHER": "x"})
    refreshing = chat_channel(llama_channel, 6697, refresh={"client_id": "webtvtestapp"})
    with pytest.raises(ChatBotConfigError, match="refresh token in the environment variable"):
        environment = {"WEBTV_TWITCH_TOKEN": TOKEN, "WEBTV_TWITCH_CLIENT_SECRET": "x"}
        run_chat_bot(refreshing, {}, Path("/nonexistent"), stop, environment)
    with pytest.raises(ChatBotConfigError, match="spaces or control characters") as error:
        read_token(channel, {"WEBTV_TWITCH_TOKEN": f"{SECRET}\r\nPRIVMSG #x :hi"})
    assert SECRET not in str(error.value)
    assert read_token(channel, {"WEBTV_TWITCH_TOKEN": f" {TOKEN}\n"}) == TOKEN
    assert read_token(channel, {"WEBTV_TWITCH_TOKEN": f"OAuth:{SECRET}"}) == TOKEN


BOT_PROCESS = """
import sys, threading
from pathlib import Path
from webtv_dagster.channels import Channel
from webtv_dagster.audience.chat_bot import run_chat_bot
channel = Channel.model_validate_json(Path(sys.argv[1]).read_text())
run_chat_bot(channel, {}, Path(sys.argv[2]), threading.Event())
print("stopped cleanly")
"""


def test_sigterm_stops_a_bot_process_cleanly(irc_server, llama_channel, tmp_path):
    channel = chat_channel(llama_channel, irc_server.port)
    channel_file = tmp_path / "channel.json"
    channel_file.write_text(channel.model_dump_json())
    with viewer(irc_server.port, "ann") as ann:
        process = subprocess.Popen(
            [sys.executable, "-c", BOT_PROCESS, str(channel_file), str(tmp_path)],
            env={"WEBTV_TWITCH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            ann.wait_for(ann.bot_is_here, "the bot process", timeout=60)
            assert SECRET not in process_list()  # read from its environment, not its arguments
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=10)
        finally:
            stop_process(process, timeout=1)
        assert process.returncode == 0 and "stopped cleanly" in output, output
        ann.wait_for(lambda: ann.find(rf"^:{BOT}!\S+ QUIT"), "the bot's QUIT")
        assert SECRET not in output


def test_the_supervised_bot_killed_is_restarted_and_answers_again(
    irc_server, llama_channel, tmp_path
):
    """`webtv chat-bot` as `webtv up` supervises it (program chat:chat_<slug>), from a channels file
    and the token in the environment; SIGKILLed, supervisord starts it again and it rejoins."""
    import yaml

    from webtv_dagster.public_site import public_folder
    from webtv_dagster.stack.programs import chat_channel, chat_program, media_programs
    from webtv_dagster.stack.supervisord import (
        StackSupervisor,
        supervisord_binary,
        write_supervisord_conf,
    )

    from .conftest import TEST_CHANNELS, wait_for

    raw = yaml.safe_load(TEST_CHANNELS.read_text())
    raw["channels"][0]["requests"] = chat_requests(irc_server.port)
    channels_file = tmp_path / "channels.yaml"
    channels_file.write_text(yaml.safe_dump(raw))
    data_dir = (tmp_path / "data").resolve()
    slug = llama_channel.slug
    programs = media_programs(data_dir, [], public_folder(data_dir), None, [slug])
    conf = write_supervisord_conf(data_dir, [p for p in programs if chat_channel(p.name)])
    environment = {
        **os.environ,
        "WEBTV_TWITCH_TOKEN": TOKEN,
        "WEBTV_DATA_DIR": str(data_dir),
        "WEBTV_CHANNELS_FILE": str(channels_file),
    }
    supervisord = subprocess.Popen(
        [supervisord_binary(), "-c", str(conf)], env=environment, start_new_session=True
    )
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(data_dir), 30, "supervisord")
        program = chat_program(slug)
        with viewer(irc_server.port, "ann") as ann:
            ann.wait_for(ann.bot_is_here, "the supervised bot", timeout=60)
            assert "in the queue" in ann.ask(f"!add {KITE}")
            first = supervisor.process(program)["pid"]
            os.kill(first, signal.SIGKILL)
            wait_for(
                lambda: supervisor.process(program)["pid"] not in (0, first),
                20,
                "the bot started again",
            )
            ann.wait_for(
                lambda: len(ann.find(rf"^:{BOT}!\S+ JOIN")) >= 2, "the bot back", timeout=60
            )
            assert "in the queue" in ann.ask("!add a llama rowing a tiny boat")
        assert len(approved(data_dir, slug)) == 2
        assert SECRET not in conf.read_text()
    finally:
        with contextlib.suppress(Exception):
            StackSupervisor(data_dir).shutdown()
        try:
            supervisord.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(supervisord.pid, signal.SIGKILL)
