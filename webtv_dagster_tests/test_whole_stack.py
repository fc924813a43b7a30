"""`webtv up` as a user runs it, with a channel that has every option on (viewers' requests with
a chat bot, a mirror, retention, a schedule): every program of the stack runs what it should,
`webtv status` says so, the channel airs on our RTMP server and on its mirror, and the bot
answers in its chat. A test of one part can pass while the whole fails: once, a channel's
playout and chat bot got the same supervisord program, and only the bot ran."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from webtv_dagster.stack.programs import chat_program, playout_program
from webtv_dagster.stack.supervisord import StackSupervisor

from .air_monitor import AirMonitor
from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, wait_for
from .irc import TOKEN, chat_requests, viewer
from .servers import start_webtv_up, stop_process

SLUG = "test-llamas"


@pytest.fixture
def every_option_on(tmp_path, irc_server) -> Path:
    """The test channel with requests (auto approval) and their chat bot on the test IRC
    server, retention and a schedule."""
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    channel = document["channels"][0]
    channel["requests"] = chat_requests(irc_server.port)
    channel["retention"] = {"keep_days": 7, "keep_gb": 1}
    channel["schedule"] = {"cron": "0 20 * * *", "clips": 2}
    document["channels"] = [channel]
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_webtv_up_with_every_option_on_runs_every_program_and_airs(
    tmp_path, every_option_on, irc_server, rtmp_server
):
    # The mirror: a second RTMP server (the rtmp_server fixture) that our nginx pushes to.
    mirror = rtmp_server.publish_url(SLUG)
    stack = start_webtv_up(
        tmp_path,
        every_option_on,
        ACCESS_KEY,
        SECRET_KEY,
        WEBTV_TWITCH_TOKEN=TOKEN,
        WEBTV_MIRRORS_TEST_LLAMAS=mirror,
    )
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        expected = {  # each program, and what its process runs
            "s3": "weed",
            "rtmp": "nginx",
            "viewer-service": "viewer-service",
            playout_program(SLUG): f"playout {SLUG}",
            chat_program(SLUG): f"chat-bot {SLUG}",
            "dagster-code-server": "code-server start",
            "dagster-webserver": "dagster-webserver",
            "dagster-daemon": "dagster-daemon run",
        }

        def running() -> dict[str, int]:
            return {
                (f"{i['group']}:{i['name']}" if i["group"] != i["name"] else i["name"]): i["pid"]
                for i in supervisor.processes()
                if i["statename"] == "RUNNING"
            }

        # The webserver and the daemon wait for the code server before they become themselves.
        wait_for(
            lambda: (
                set(running()) == set(expected)
                and all(what in command_line(running()[name]) for name, what in expected.items())
            ),
            180,
            "every program running what it should",
        )

        def status_once_on_air() -> str:
            said = subprocess.run(
                [stack.webtv, "status"],
                env=stack.environment,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            return said if f"channel {SLUG}: on air" in said else ""

        said = wait_for(status_once_on_air, 60, "`webtv status` saying the channel is on air")
        for name in expected:
            assert re.search(rf"^{re.escape(name)} +RUNNING +pid \d+", said, re.MULTILINE), said
        # On air, on our server and on the mirror.
        for url in (f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live", mirror):
            with AirMonitor(url) as watcher:
                watcher.wait_for_frames(48, timeout=90)
        # The bot answers in its chat.
        with viewer(irc_server.port, "ann") as ann:
            ann.wait_for(ann.bot_is_here, "the chat bot", timeout=90)
            assert "in the queue" in ann.ask("!add a llama rowing a tiny boat")
    finally:
        subprocess.run([stack.webtv, "down"], env=stack.environment, timeout=180)
        stop_process(stack.process, timeout=60)
