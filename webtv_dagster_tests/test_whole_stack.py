"""`webtv up` as a user runs it, with a channel that has every option on (viewers' requests with
a chat bot, a mirror, retention, a schedule): every program of the stack runs what it should,
`webtv status` says so, the channel airs on our RTMP server and on its mirror, and the bot
answers in its chat. A test of one part can pass while the whole fails: once, a channel's
playout and chat bot got the same supervisord program, and only the bot ran."""

import contextlib
import csv
import io
import itertools
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from webtv_dagster.stack.embedded_s3 import grpc_sockets
from webtv_dagster.stack.processes import is_running
from webtv_dagster.stack.programs import chat_program, playout_channel, playout_program
from webtv_dagster.stack.supervisord import StackSupervisor, supervised_name

from .air_monitor import AirMonitor
from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, wait_for
from .irc import TOKEN, chat_requests, viewer
from .servers import running_prometheus, start_webtv_up, stop_webtv_up

SLUG = "test-llamas"
DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "webtv-dashboard.json"


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


def up_with_every_option(folder: Path, channels_file: Path, **settings: str):
    """`webtv up` on the channel with every option on, with the chat bot's token."""
    return start_webtv_up(
        folder, channels_file, ACCESS_KEY, SECRET_KEY, WEBTV_TWITCH_TOKEN=TOKEN, **settings
    )


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


# Every program of the stack, and what its process runs.
EXPECTED = {
    "s3": "weed",
    "rtmp": "nginx",
    "viewer-service": "viewer-service",
    playout_program(SLUG): f"playout {SLUG}",
    chat_program(SLUG): f"chat-bot {SLUG}",
    "dagster-code-server": "code-server start",
    "dagster-webserver": "dagster-webserver",
    "dagster-daemon": "dagster-daemon run",
    "watchdog": "watchdog",
}


def running(supervisor) -> dict[str, int]:
    """Each running program's pid, by its supervisord name (group:program when grouped)."""
    return {
        supervised_name(info): info["pid"]
        for info in supervisor.processes()
        if info["statename"] == "RUNNING"
    }


def wait_until_every_program_runs(supervisor, timeout: float = 180) -> dict[str, int]:
    """Waits until every program runs what it should (the webserver and the daemon wait for
    the code server before they become themselves); returns their pids."""

    def every_program_runs() -> dict[str, int]:
        pids = running(supervisor)
        if set(pids) != set(EXPECTED):
            return {}
        return pids if all(what in command_line(pids[n]) for n, what in EXPECTED.items()) else {}

    return wait_for(every_program_runs, timeout, "every program running what it should")


def on_air(stack) -> bool:
    said = subprocess.run(
        [stack.webtv, "status"], env=stack.environment, capture_output=True, text=True, timeout=60
    ).stdout
    return f"channel {SLUG}: on air" in said


def test_webtv_up_with_every_option_on_runs_every_program_and_airs(
    tmp_path, every_option_on, irc_server, rtmp_server
):
    # The mirror: a second RTMP server (the rtmp_server fixture) that our nginx pushes to.
    mirror = rtmp_server.publish_url(SLUG)
    stack = up_with_every_option(tmp_path, every_option_on, WEBTV_MIRRORS_TEST_LLAMAS=mirror)
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        wait_until_every_program_runs(supervisor)

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
        for name in EXPECTED:
            assert re.search(rf"^{re.escape(name)} +RUNNING +pid \d+", said, re.MULTILINE), said
        # On air, on our server and on the mirror.
        for url in (f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live", mirror):
            with AirMonitor(url) as watcher:
                watcher.wait_for_frames(48, timeout=90)
        # The bot answers in its chat.
        with viewer(irc_server.port, "ann") as ann:
            ann.wait_for(ann.bot_is_here, "the chat bot", timeout=90)
            assert "in the queue" in ann.ask("!add a llama rowing a tiny boat")
        monitored_by_prometheus(stack, supervisor)

        # What went out is in the as-run log, clip after clip on the timeline, a publisher
        # killed (above) and all.
        def sent_as_run() -> list[dict]:
            printed = subprocess.run(
                [stack.webtv, "as-run", SLUG],
                env=stack.environment,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            rows = csv.DictReader(io.StringIO(printed))
            return [row for row in rows if row["event"] != "skipped"]

        sent = wait_for(lambda: len(rows := sent_as_run()) >= 3 and rows, 60, "3 clips sent")
        assert {row["event"] for row in sent} == {"aired"}, sent
        assert all(a["stream_end"] == b["stream_start"] for a, b in itertools.pairwise(sent))
    finally:
        left = stop_webtv_up(stack)
    assert left == [], "processes of the stack left running after `webtv down`"
    # Nor the gRPC sockets SeaweedFS names in /tmp and never removes.
    s3_port = int(stack.environment["WEBTV_S3_ENDPOINT_URL"].rsplit(":", 1)[1])
    assert grpc_sockets(s3_port) == []


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def monitored_by_prometheus(stack, supervisor) -> None:
    """A real Prometheus scrapes /metrics on the viewer's port; what the test does shows in
    its figures: a publisher killed is one restart, a viewer service killed one restart of that
    program, the request asked in chat one request of the channel."""
    site = f"http://127.0.0.1:{stack.rtmp_port + 1}"
    # The watchdog answers them, once it has started (the last program to).
    wait_for(lambda: fetch(f"{site}/healthz") == (200, b"ok\n"), 120, "/healthz answering")
    status, body = fetch(f"{site}/readyz")
    assert (status, json.loads(body)) == (200, {"ready": True, "off_air": []}), body
    channel = f'channel="{SLUG}"'
    with running_prometheus(f"{site}/metrics") as prometheus:

        def value(query: str) -> float | None:
            return prometheus.value(query)

        restarts = f"webtv_channel_publisher_restarts_total{{{channel}}}"
        wait_for(lambda: value(restarts) == 0, 60, "Prometheus scraping the stack")
        assert value(f"webtv_channel_on_air{{{channel}}}") == 1
        assert value(f"sum(webtv_channel_requests{{{channel}}})") == 1
        assert value('webtv_process_up{program="rtmp"}') == 1
        assert value('webtv_process_restarts_total{program="viewer-service"}') == 0
        playout = running(supervisor)[playout_program(SLUG)]
        os.kill(wait_for(lambda: publisher_of(playout), 30, "the publisher"), signal.SIGKILL)
        os.kill(running(supervisor)["viewer-service"], signal.SIGKILL)
        wait_for(lambda: value(restarts) == 1, 60, "Prometheus counting the publisher's restart")
        wait_for(
            lambda: value('webtv_process_restarts_total{program="viewer-service"}') == 1,
            60,
            "Prometheus counting the viewer service's restart",
        )
        wait_for(lambda: value(f"webtv_channel_on_air{{{channel}}}") == 1, 30, "back on air")
        # A viewer on RTMP is counted (not the publisher, not the mirror's relay), and leaves.
        viewers = f"webtv_channel_rtmp_viewers{{{channel}}}"
        assert value(viewers) == 0
        with AirMonitor(f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live") as watcher:
            watcher.wait_for_frames(24, timeout=60)
            wait_for(lambda: value(viewers) == 1, 30, "Prometheus counting the RTMP viewer")
        wait_for(lambda: value(viewers) == 0, 30, "the viewer gone")
        # An HLS player is counted by the viewer service, one player however often it asks.
        players = f"webtv_channel_hls_viewers{{{channel}}}"
        assert value(players) == 0
        for _ in range(3):
            assert fetch(f"{site}/hls/{SLUG}/live.m3u8")[0] == 200
        wait_for(lambda: value(players) == 1, 30, "Prometheus counting the HLS player")
        assert value(f"webtv_channel_seconds_since_last_frame{{{channel}}}") < 3
        assert value(f"webtv_channel_unplayed_seconds{{{channel}}}") > 0
        # The production counts, from the code location's sensor (30 s between ticks).
        made = f'webtv_clips_made_total{{{channel},stage="shot_prompt"}}'
        wait_for(lambda: value(made) is not None, 90, "Prometheus reading the production counts")
        # Every query of the Grafana dashboard is one Prometheus runs and finds series for.
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                assert prometheus.series(target["expr"]), (panel["title"], target["expr"])


def publisher_of(playout: int) -> int | None:
    """The pid of the playout's FFmpeg publisher (its child reading at real time, `-re`; its
    other FFmpeg children remux clips), or None."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            if int(fields[1].split()[1]) == playout and " -re " in command_line(
                int(stat.parent.name)
            ):
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return None


def test_every_hung_program_of_webtv_up_is_killed_and_restarted_by_itself(
    tmp_path, every_option_on, irc_server, receiver
):
    """Each kind of process of the stack frozen (SIGSTOP, as a deadlock or a dead disk would
    leave it) for 30 s, one after the other: the watchdog kills it and supervisord restarts
    it, within 3 s for a playout or its publisher (the playout replaces a stalled publisher
    itself) and 10 s for the others; each kill is alerted, and the channel is back on air."""
    import os
    import signal
    import time

    url, alerts = receiver
    stack = up_with_every_option(tmp_path, every_option_on, WEBTV_ALERT_WEBHOOK_URL=url)
    # Whose pid changes when the frozen process is replaced, and within how many seconds.
    faults = [
        ("publisher", 3.0),
        (playout_program(SLUG), 3.0),
        (chat_program(SLUG), 10.0),
        ("rtmp", 10.0),
        ("viewer-service", 10.0),
        ("s3", 10.0),
        ("dagster-webserver", 10.0),
        ("dagster-code-server", 10.0),
        ("dagster-daemon", 10.0),
    ]
    replaced_after: dict[str, float] = {}
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        watchdog = wait_until_every_program_runs(supervisor)["watchdog"]
        for fault, _ in faults:
            pids = wait_until_every_program_runs(supervisor)
            wait_for(lambda: on_air(stack), 120, "the channel on air")
            playout = pids[playout_program(SLUG)]
            if fault == "publisher":
                # A publisher that sends (one frozen as it starts up has 5 s to begin).
                with AirMonitor(f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live") as watcher:
                    watcher.wait_for_frames(48, timeout=90)
                frozen = wait_for(lambda p=playout: publisher_of(p), 60, "the publisher")

                def replaced(p=playout, f=frozen) -> bool:
                    return publisher_of(p) not in (None, f)
            else:
                frozen = pids[fault]

                def replaced(name=fault, f=frozen) -> bool:  # restarted, maybe still starting
                    return (supervisor.process(name) or {}).get("pid") not in (None, 0, f)

            freeze = os.killpg if fault == "rtmp" else os.kill  # nginx: master and workers
            frozen_at = time.monotonic()
            freeze(frozen, signal.SIGSTOP)
            try:
                wait_for(replaced, 30, f"the frozen {fault} replaced")
                replaced_after[fault] = time.monotonic() - frozen_at
            finally:
                with contextlib.suppress(ProcessLookupError):
                    freeze(frozen, signal.SIGCONT)
        pids = wait_until_every_program_runs(supervisor)
        assert pids["watchdog"] == watchdog  # it never failed itself
        wait_for(lambda: on_air(stack), 120, "the channel on air")
        with AirMonitor(f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live") as watcher:
            watcher.wait_for_frames(48, timeout=90)
    finally:
        left = stop_webtv_up(stack)
    assert left == [], "processes of the stack left running after `webtv down`"
    print("replaced after", {name: round(after, 1) for name, after in replaced_after.items()})
    for fault, bound in faults:
        assert replaced_after[fault] <= bound, (fault, replaced_after)
    alerted = {alert["title"] for alert in alerts}
    for fault, _ in faults[1:]:  # the publisher is replaced by its playout, not the watchdog
        assert f"{fault} hung and was restarted" in alerted, alerted


def test_a_stack_outlives_its_manager_and_the_next_webtv_up_takes_it_over(tmp_path):
    """`webtv up` killed (a closed terminal): its supervisord runs on, and the next `webtv up`
    takes it over untouched. Then `webtv up` and supervisord killed (the OOM killer): the
    programs air on, orphaned, and the next `webtv up` replaces them, off the air for at
    most 5 s and supervising within 30 s. A stack of another folder on the same ports is
    refused, named."""
    import os
    import signal
    import time

    def webtv_up_again(folder: Path):
        """`webtv up` of `folder` on the first stack's ports."""
        return start_webtv_up(
            folder, TEST_CHANNELS, ACCESS_KEY, SECRET_KEY, ui_port=ui_port, **ports
        )

    stack = start_webtv_up(tmp_path, TEST_CHANNELS, ACCESS_KEY, SECRET_KEY)
    ports = {
        name: stack.environment[name]
        for name in ("WEBTV_S3_ENDPOINT_URL", "WEBTV_RTMP_PORT", "WEBTV_HLS_PORT")
    }
    ui_port = int(stack.process.args[-1])
    supervisor_pid_file = stack.data_dir / "supervisor" / "supervisord.pid"
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        wait_for(lambda: on_air(stack), 120, "the channel on air")
        with AirMonitor(f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live") as viewer:
            viewer.wait_for_frames(48, timeout=90)
            # The manager killed; its supervisord runs on, and the next webtv up takes over.
            before = running(supervisor)
            stack.process.kill()
            stack.process.wait()
            killed_at = time.monotonic()
            stack = webtv_up_again(tmp_path)
            wait_for(lambda: "took over" in (tmp_path / "webtv-up.log").read_text(), 60)
            time.sleep(3)
            assert running(StackSupervisor.connect(stack.data_dir)) == before  # untouched
            assert viewer.longest_gap(killed_at) < 1.0

            # The manager and supervisord killed: the programs air on, orphaned.
            supervisord = int(supervisor_pid_file.read_text())
            stack.process.kill()
            os.kill(supervisord, signal.SIGKILL)
            stack.process.wait()
            wait_for(lambda: StackSupervisor.connect(stack.data_dir) is None, 30, "its death")
            time.sleep(2)
            assert viewer.longest_gap(time.monotonic() - 2) < 1.0  # still on air

            # Another folder's stack on the same ports is refused, named.
            other = tmp_path / "other"
            other.mkdir()
            refused = webtv_up_again(other)
            assert refused.process.wait(timeout=120) != 0
            said = (other / "webtv-up.log").read_text()
            assert f"in use by the stack of {stack.data_dir.resolve()}" in said, said

            # The next webtv up of this folder replaces the orphans.
            again_at = time.monotonic()
            stack = webtv_up_again(tmp_path)
            supervisor = wait_for(
                lambda: StackSupervisor.connect(stack.data_dir), 30, "supervising again"
            )
            wait_for(lambda: set(running(supervisor)) >= set(before), 30, "every program")
            supervising_after = time.monotonic() - again_at
            # The orphaned playouts handed over to the new ones, and ended.
            orphans = [pid for name, pid in before.items() if playout_channel(name)]
            wait_for(lambda: not any(map(is_running, orphans)), 30, "the orphans' hand-over")
            viewer.wait_for_frames(len(viewer.video()) + 48, timeout=60)
            off_air = viewer.longest_gap(again_at)
        print(f"supervising again after {supervising_after:.1f} s, {off_air:.1f} s off air")
        assert supervising_after <= 30
        assert off_air <= 5.0, f"{off_air:.1f} s off air"
        assert "replaced" in (tmp_path / "webtv-up.log").read_text()
    finally:
        left = stop_webtv_up(stack)
    assert left == [], "processes of the stack left running after `webtv down`"


@pytest.fixture
def data_disk(tmp_path) -> Iterator[Path]:
    """The stack's data folder on a 1 GB disk of its own (a tmpfs: mounting takes root)."""
    import os

    data = tmp_path / "data"
    data.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1g,mode=0700", "tmpfs", str(data)],
            capture_output=True,
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("mounting a tmpfs takes root")
    try:
        yield data
    finally:
        subprocess.run(["umount", "--lazy", str(data)])


@pytest.mark.long
def test_a_full_disk_fails_production_with_an_alert_keeps_air_and_recovers_by_itself(
    tmp_path, data_disk, every_option_on, receiver
):
    """The data folder's disk filled to the last byte for 20 s, under the whole stack (and its
    manager's log, `webtv up > data/webtv-up.log`): the watchdog alerts, the channel airs on from
    its cache without a gap, nothing kept is corrupt (the playout's state, playlist, take-downs
    and cached clips), and once the disk has room the watchdog says so, the programs' logs go on
    (supervisord closed a program's output for good when it could write neither the log nor its
    error) and clips are made again, with no one's help."""
    import shutil
    import time

    from webtv_dagster.playout.library import mismatch, saved_playlist
    from webtv_dagster.playout.state import PlayoutFolder, read_state
    from webtv_dagster.playout.takedowns import Takedowns

    url, alerts = receiver
    # A clip a run: the first clip, and the first after the disk has room, land a run sooner.
    stack = up_with_every_option(
        tmp_path,
        every_option_on,
        log=data_disk / "webtv-up.log",
        WEBTV_ALERT_WEBHOOK_URL=url,
        WEBTV_CLIPS_PER_RUN="1",
    )
    folder = PlayoutFolder.of(data_disk, SLUG)

    def newest_clip() -> int:
        playlist = saved_playlist(folder)
        return max((int(e.clip_id.rsplit("-", 1)[1]) for e in playlist.entries), default=0)

    def alerted(title: str) -> bool:
        return any(alert["title"] == title for alert in alerts)

    filler = data_disk / "filler"
    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        wait_until_every_program_runs(supervisor)
        wait_for(lambda: on_air(stack), 120, "the channel on air")
        wait_for(lambda: saved_playlist(folder) and newest_clip() >= 1, 300, "a clip made")
        with AirMonitor(f"rtmp://127.0.0.1:{stack.rtmp_port}/{SLUG}/live") as watcher:
            watcher.wait_for_frames(48, timeout=90)
            full_at = time.monotonic()
            with filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    out.write(b"\0" * 2**20)
                    out.flush()
            made_before = newest_clip()
            wait_for(lambda: alerted("the data folder's disk is full"), 30, "the alert")
            time.sleep(max(0.0, full_at + 20 - time.monotonic()))
            filler.unlink()
            freed_at = time.monotonic()
            wait_for(lambda: alerted("the data folder's disk has room again"), 30, "room again")
            watchdog_log = data_disk / "supervisor" / "logs" / "watchdog.log"
            wait_for(lambda: "has room again" in watchdog_log.read_text(), 10, "the log going on")
            wait_for(lambda: newest_clip() > made_before, 300, "clips made again")
            off_air = watcher.longest_gap(full_at)
            steps = watcher.steps_over_one_frame(full_at)
        pids = running(supervisor)
        assert set(pids) == set(EXPECTED)
        state = read_state(data_disk, SLUG)
        assert state is not None and state.updated_at > freed_at - 1  # written again
        playlist = saved_playlist(folder)
        assert playlist is not None
        for entry in playlist.entries:
            copy = folder.cache / f"{entry.clip_id}.mp4"
            if copy.exists():
                assert mismatch(copy, entry) is None, entry.clip_id
        if folder.takedowns.exists():
            Takedowns.model_validate_json(folder.takedowns.read_bytes())
        assert not list(folder.path.rglob("*.part")), "partial files left behind"
    finally:
        filler.unlink(missing_ok=True)
        left = stop_webtv_up(stack)
        # The logs outlive the disk (unmounted at the end), for whoever reads a failure.
        shutil.copytree(data_disk / "supervisor", tmp_path / "logs", dirs_exist_ok=True)
        shutil.copy(data_disk / "webtv-up.log", tmp_path / "logs")
        shutil.copy(folder.path / "playout.log", tmp_path / "logs")
    assert left == [], "processes of the stack left running after `webtv down`"
    print(f"off air {off_air:.2f} s, timestamp steps over a frame: {steps}")
    titles = [alert["title"] for alert in alerts]
    print("alerts:", titles)
    # Nothing hung: the full disk is alerted as such, not as programs restarted.
    assert not [title for title in titles if "hung" in title], titles
    assert "closing channel" not in (tmp_path / "logs" / "supervisord.log").read_text()
    assert off_air <= 5.0
    assert steps == []


def five_channels(path: Path, slugs: list[str]) -> Path:
    """The test channel under each of `slugs`, making nothing ahead (the test cards air)."""
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    template = {**document["channels"][0], "ahead_seconds": 0}
    document["channels"] = [
        {**template, "slug": slug, "title": f"Channel {slug}"} for slug in slugs
    ]
    path.write_text(yaml.safe_dump(document))
    return path


def test_channels_are_added_and_removed_live_and_the_others_air_on_untouched(tmp_path):
    """5 channels on air; one added and one removed by `webtv reload`, another added by editing
    the file alone: the three untouched show no reconnect and no timestamp step, the new ones
    air within 60 s; a broken file changes nothing and says why."""
    channels_file = five_channels(tmp_path / "channels.yaml", [f"ch-{n}" for n in range(1, 6)])
    stack = start_webtv_up(tmp_path, channels_file, ACCESS_KEY, SECRET_KEY)

    def webtv(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [stack.webtv, *arguments],
            env=stack.environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def url(slug: str) -> str:
        return f"rtmp://127.0.0.1:{stack.rtmp_port}/{slug}/live"

    try:
        supervisor = wait_for(lambda: StackSupervisor.connect(stack.data_dir), 60, "supervisord")
        untouched = ["ch-1", "ch-2", "ch-3"]
        with contextlib.ExitStack() as watching:
            viewers = {slug: watching.enter_context(AirMonitor(url(slug))) for slug in untouched}
            for viewer in viewers.values():
                viewer.wait_for_frames(48, timeout=180)
            # (before air began, a subscriber tries again until the stream exists)
            connected = {slug: viewer.connections for slug, viewer in viewers.items()}
            since = time.monotonic()
            pids = running(supervisor)
            # One added, one removed, by the command.
            five_channels(channels_file, [*untouched, "ch-4", "ch-6"])
            reloaded_at = time.monotonic()
            said = webtv("reload")
            assert said.returncode == 0, said.stderr
            assert "nginx reloaded" in said.stdout and "playout_ch-6" in said.stdout, said.stdout
            with AirMonitor(url("ch-6")) as added:
                added.wait_for_frames(24, timeout=60 - (time.monotonic() - reloaded_at))
            assert supervisor.process(playout_program("ch-5")) is None
            # Run with other settings than the stack's (a shell without its environment):
            # refused, before anything changes.
            other_port = {**stack.environment, "WEBTV_HLS_PORT": str(stack.rtmp_port + 7)}
            said = subprocess.run(
                [stack.webtv, "reload"], env=other_port, capture_output=True, text=True
            )
            assert said.returncode != 0 and "WEBTV_HLS_PORT" in said.stderr, said.stderr
            # A broken file: nothing changes, and the reason is said.
            channels_file.write_text("channels: [{slug: ch-1}]\n")
            said = webtv("reload")
            assert said.returncode != 0 and "title" in said.stderr, said.stderr
            # Another channel, by editing the file alone: the stack notices within 30 s.
            five_channels(channels_file, [*untouched, "ch-4", "ch-6", "ch-7"])
            edited_at = time.monotonic()
            wait_for(lambda: supervisor.process(playout_program("ch-7")), 40, "the file noticed")
            with AirMonitor(url("ch-7")) as added:
                added.wait_for_frames(24, timeout=90 - (time.monotonic() - edited_at))
            after = running(supervisor)
            time.sleep(3)
        # The untouched channels' programs ran on; their viewers saw nothing happen.
        for slug in untouched:
            assert after[playout_program(slug)] == pids[playout_program(slug)]
            viewer = viewers[slug]
            assert viewer.connections == connected[slug], slug
            steps = viewer.steps_over_one_frame(since)
            assert steps == [], (slug, steps)
            assert viewer.longest_gap(since) < 1.0, slug
        assert after["rtmp"] == pids["rtmp"]  # nginx reloaded, not restarted
    finally:
        left = stop_webtv_up(stack)
    assert left == []
