"""The stack's watchdog (`webtv watchdog`, a program of `webtv up`): supervisord restarts a
program that dies, not one that hangs (frozen, deadlocked, stuck on a dead disk or a library
call). The watchdog checks every running program of the stack from outside, by what a hung
program cannot fake, and kills one that fails (SIGKILL to its process group): supervisord then
restarts it. Each kill is logged and alerted.

| program | its check | hung when |
|---|---|---|
| a playout | its feeder's heartbeat (its hung publisher it replaces itself) | no beat for 2 s |
| a chat bot | its reader's heartbeat | no beat for 6.5 s |
| rtmp (nginx) | GET /channels.json on its HTTP port, every 0.5 s | 2 failures in a row (1 s each) |
| viewer-service | GET a channel's guide on its socket | 2 failures in a row |
| s3 | HEAD of the bucket | 2 failures in a row |
| dagster-webserver | GET /server_info | 2 failures in a row |
| dagster-code-server | gRPC health of DagsterApi on its socket | 2 failures in a row |
| dagster-daemon | its process state (it offers nothing to ask) | stopped (SIGSTOP) on 2 looks |

Memory is bounded too: a program of the stack's Python (Dagster's webserver, daemon and code
server, the playouts, the viewer service, the chat bots) whose resident memory passes
WEBTV_MEMORY_CEILING_MB is asked to stop (SIGTERM to its process group, SIGKILL if it has not
stopped RECYCLE_STOP_SECONDS later), and supervisord starts it afresh; it is alerted. A slow
leak (the Dagster daemon grows a few MB an hour) then costs a restart every few days instead of
the OOM killer's choice. nginx and SeaweedFS (whose memory follows what it holds) are left to
their own bounds.

The watchdog also watches the free space of the data folder's disk: below WEBTV_DISK_LOW_MB
it alerts once (clips are not made there, the channels air what their caches hold), and once
more when twice that is free again. And it alerts when the operator token is being guessed:
GUESSES_ALERTED wrong tokens at the dump button within GUESS_WINDOW_SECONDS.

Looks overlap: one goes out every period even while the one before waits for its timeout, so a
frozen nginx is known 1.5 s after its first unanswered look (two 1 s timeouts one after the
other took 2.4 s).

A program is held to its check once it passed it (a program still starting is not hung), or
at the latest once its start-up allowance ran out (one that never comes up is hung too), and
only while supervisord says it runs: an operator's stop is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import xmlrpc.client
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from webtv_dagster.audience.chat_bot import CHAT_BOT_HANG_SECONDS, chat_bot_heartbeat
from webtv_dagster.audience.wrong_tokens import wrong_tokens_counted
from webtv_dagster.channels import ChannelConfigError, load_channels
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.public_site import UnixHTTPConnection, viewer_service_socket
from webtv_dagster.settings import Settings
from webtv_dagster.stack.alerts import AlertOutbox, alerts_folder, check_notifiers, notifiers_of
from webtv_dagster.stack.processes import process_state
from webtv_dagster.stack.programs import chat_channel, playout_channel, webtv_command
from webtv_dagster.stack.supervisord import StackSupervisor, supervised_name
from webtv_dagster.stack.up import channels_differ, reload_log
from webtv_dagster.storage import StorageError

log = logging.getLogger(__name__)

LOOK_SECONDS = 0.25  # how often each program is checked
# A program that starts RESTART_LOOP_STARTS times within RESTART_LOOP_SECONDS is alerted.
RESTART_LOOP_STARTS = 3
RESTART_LOOP_SECONDS = 600.0
ALIVE_SECONDS = 5.0  # /healthz fails once supervisord has not answered for this long
PLAYOUT_HANG_SECONDS = 2.0  # its feeder beats every 0.5 s as it works and as it waits
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_FAILURES = 2  # failed probes in a row that make a program hung
PROBE_EVERY_SECONDS = 1.0
# nginx carries the air (a hang of it is time off air): it is asked twice as often, given half
# the time (it answers a static file in milliseconds).
AIR_PROBE_TIMEOUT_SECONDS = 1.0
AIR_PROBE_EVERY_SECONDS = 0.5
DISK_EVERY_SECONDS = 5.0  # how often the data folder's free space is looked at
MEMORY_EVERY_SECONDS = 30.0  # how often each program's resident memory is looked at
RECYCLE_STOP_SECONDS = 60.0  # a program asked to stop at its ceiling is killed after this
# Programs not restarted at the memory ceiling: nginx's memory is its workers', SeaweedFS's
# follows what it stores (Go's collector), and the watchdog is the one that looks.
NOT_RECYCLED = {"rtmp", "s3", "watchdog"}
# Wrong operator tokens (from all clients) within the window that make an alert, once a window:
# each client is held to 5 a minute, so this many come from guessers, not a mistyping operator.
GUESSES_ALERTED = 20
GUESS_WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class Check:
    """How one program is checked: `failing()` says why it looks hung (None: it does not), at
    most every `every` seconds; it is hung once `failing()` said so `failures` times in a row,
    or (with `failures` 0) at once, counted once it passed the check or `grace` seconds after
    it started."""

    failing: Callable[[], str | None]
    grace: float
    every: float = LOOK_SECONDS
    failures: int = 0


def _heartbeat(path: Path, started: float, hang_seconds: float) -> str | None:
    """Why the process that started at `started` looks hung by its heartbeat, or None. Until it
    first beats it has not passed its check (it is still starting)."""
    try:
        beaten = path.stat().st_mtime
    except FileNotFoundError:
        beaten = 0.0
    if beaten < started:
        return "no heartbeat since it started"
    age = time.time() - beaten
    return f"no heartbeat for {age:.1f} s" if age > hang_seconds else None


def _http(url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
    except OSError as error:  # timeouts, refusals and HTTP errors alike
        return f"GET {url} failed: {error}"
    return None


def _http_on_socket(socket_path: Path, path: str) -> str | None:
    connection = UnixHTTPConnection(socket_path, PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except OSError as error:
        return f"GET {path} on {socket_path} failed: {error}"
    finally:
        connection.close()
    return None if status < 500 else f"GET {path} on {socket_path} answered {status}"


def _grpc_health(socket_path: Path) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        try:
            status = (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=2.0)
                .status
            )
        except grpc.RpcError as error:
            return f"its gRPC health check failed: {error.code().name}"
    serving = status == health_pb2.HealthCheckResponse.SERVING
    return None if serving else f"its gRPC health is {status}"


def _resident_mb(pid: int) -> float | None:
    """The process's resident memory (VmRSS), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _stopped(pid: int) -> str | None:
    # Gone (None): supervisord sees to that.
    return "its process is stopped" if process_state(pid) in {"T", "t"} else None


@dataclass
class _Watched:
    """A running program as the watchdog follows it: its process, its check, the failures in a
    row, and the look under way."""

    pid: int
    started: float
    check: Check | None
    passed: bool = False  # its check once: from then on it is held to it
    failures: int = 0
    next_look: float = 0.0
    # The looks under way, oldest first: a look goes out every `every` seconds even while the
    # one before waits for its timeout, so that a hang is known `failures` looks after it began
    # rather than `failures` timeouts one after the other.
    probes: deque[Future] = field(default_factory=deque)


class Watchdog:
    """Checks the programs of the stack on `supervisor` and kills the hung ones."""

    def __init__(self, settings: Settings, supervisor: StackSupervisor, ui: str, home: Path):
        self.settings = settings
        self.supervisor = supervisor
        self.ui = ui  # the Dagster UI's host:port
        self.home = home
        self.store = MediaStore.from_settings(settings, timeout_seconds=PROBE_TIMEOUT_SECONDS)
        # The channel whose guide the viewer service is asked for.
        self.first_slug = load_channels(settings.channels_file).channels[0].slug
        self.stop = threading.Event()
        receivers = notifiers_of(settings)
        for problem in check_notifiers(receivers):
            log.error("%s: its alerts are not delivered", problem)
        # Alerts wait on disk until taken, delivered by a thread of their own (a slow or
        # refusing receiver delays no check); what a dead watchdog left is delivered too.
        self.outbox = AlertOutbox(alerts_folder(settings.data_dir), receivers)
        if receivers:
            threading.Thread(
                target=self.outbox.deliver_until, args=(self.stop,), daemon=True
            ).start()
        self.disk_low = False
        self._disk_looked = 0.0
        self._guess_counts: list[tuple[float, int]] = []  # (when, total) over the window
        self._guesses_alerted_until = 0.0
        self._memory_looked = 0.0
        # The pids asked to stop at the memory ceiling, and when each is killed if still there.
        self._recycling: dict[int, float] = {}
        # What the metrics report of the programs: supervisord's last answer, and the starts
        # of each program after the first one seen (a pid seen anew).
        self.processes: list[dict] = []
        self.restarts: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self._states: dict[str, str] = {}
        self._starts: dict[str, list[float]] = {}  # of each program, within the loop window
        self._loop_alerted: dict[str, float] = {}  # until when a loop is not alerted again
        self._answered_at = time.monotonic()  # alive from the start, until supervisord is not
        self._channels_version: tuple[int, int, int] | None = None  # the file as last looked at
        self._reload: subprocess.Popen | None = None

    def alive(self) -> bool:
        """Whether the stack is alive: supervisord answered the watchdog's last looks."""
        return time.monotonic() - self._answered_at < ALIVE_SECONDS

    def _count_starts(self, processes: list[dict]) -> None:
        now = time.monotonic()
        for info in processes:
            program, pid = supervised_name(info), info["pid"]
            if pid and self._pids.get(program, pid) != pid:
                self.restarts[program] = self.restarts.get(program, 0) + 1
                self._look_at_restart_loop(program, now)
            if pid:
                self._pids[program] = pid

    def look_at_states(self, processes: list[dict]) -> None:
        """Alerts when a program enters FATAL (supervisord gave up restarting it), and when it
        runs again: without the Dagster daemon, so a dead daemon or code server is alerted
        too."""
        for info in processes:
            program, state = supervised_name(info), info["statename"]
            was = self._states.get(program)
            self._states[program] = state
            if state == "FATAL" and was != "FATAL":
                why = info.get("spawnerr") or info.get("description") or "no reason given"
                self._notify(
                    f"{program} gave up",
                    f"supervisord stopped restarting {program}: {why}. `webtv status` shows "
                    f"it; its log is in the data folder's supervisor/logs.",
                    "error",
                )
            elif state == "RUNNING" and was == "FATAL":
                self._notify(f"{program} runs again", f"{program} is running again.", "info")

    def _look_at_restart_loop(self, program: str, now: float) -> None:
        starts = [t for t in self._starts.get(program, []) if now - t <= RESTART_LOOP_SECONDS]
        self._starts[program] = [*starts, now]
        if len(starts) + 1 >= RESTART_LOOP_STARTS and now >= self._loop_alerted.get(program, 0):
            self._loop_alerted[program] = now + RESTART_LOOP_SECONDS
            self._notify(
                f"{program} restarts in a loop",
                f"{program} started {len(starts) + 1} times in the last "
                f"{RESTART_LOOP_SECONDS / 60:.0f} minutes (it dies, or hangs and is killed): "
                "its log in the data folder's supervisor/logs says why.",
                "error",
            )

    def check_of(self, info: dict) -> Check | None:
        """How the program of supervisord's process `info` is checked (None: it is not: the
        watchdog itself)."""
        name, pid, started = info["name"], info["pid"], info["start"]
        data_dir = self.settings.data_dir
        if slug := playout_channel(name):
            beat = PlayoutFolder.of(data_dir, slug).heartbeat
            return Check(lambda: _heartbeat(beat, started, PLAYOUT_HANG_SECONDS), grace=20)
        if slug := chat_channel(name):
            beat = chat_bot_heartbeat(data_dir, slug)
            return Check(lambda: _heartbeat(beat, started, CHAT_BOT_HANG_SECONDS), grace=20)
        if name == "rtmp":
            url = f"http://127.0.0.1:{self.settings.hls_port}/channels.json"
            return Check(
                lambda: _http(url, AIR_PROBE_TIMEOUT_SECONDS),
                grace=5,
                every=AIR_PROBE_EVERY_SECONDS,
                failures=PROBE_FAILURES,
            )
        probes: dict[str, tuple[Callable[[], str | None], float]] = {
            "viewer-service": (self._viewer_service, 10),
            "s3": (self._s3, 10),
            "dagster-webserver": (lambda: _http(f"http://{self.ui}/server_info"), 90),
            "dagster-code-server": (lambda: _grpc_health(self.home / "code-server.sock"), 90),
        }
        if name in probes:
            probe, grace = probes[name]
            return Check(probe, grace, every=PROBE_EVERY_SECONDS, failures=PROBE_FAILURES)
        if name == "dagster-daemon":
            return Check(lambda: _stopped(pid), grace=30, every=PROBE_EVERY_SECONDS, failures=2)
        return None

    def _viewer_service(self) -> str | None:
        return _http_on_socket(
            viewer_service_socket(self.settings.data_dir), f"/api/{self.first_slug}/guide.json"
        )

    def _s3(self) -> str | None:
        try:
            self.store.ensure_bucket()
        except StorageError as error:
            return str(error)
        return None

    def run(self) -> None:
        """Every LOOK_SECONDS, until `stop` is set: one look at what supervisord runs, then the
        checks that are due, each in a worker of its own (a slow probe delays no other check);
        a program whose check fails as often as it may is killed."""
        watched: dict[str, _Watched] = {}
        # Threads are started as needed: 16 leave room for every probed program hung at once.
        with ThreadPoolExecutor(max_workers=16, thread_name_prefix="check") as pool:
            while not self.stop.wait(LOOK_SECONDS):
                try:
                    processes = self.supervisor.processes()
                except (OSError, xmlrpc.client.Error) as error:
                    log.warning("supervisord did not answer (%s): nothing checked", error)
                    continue
                self.processes, self._answered_at = processes, time.monotonic()
                self._count_starts(processes)
                self.look_at_states(processes)
                running = {}
                for info in processes:
                    program = supervised_name(info)
                    if info["statename"] != "RUNNING":
                        continue  # stopped by an operator, or being (re)started
                    running[program] = info
                    if (known := watched.get(program)) is None or known.pid != info["pid"]:
                        check = self.check_of(info)
                        watched[program] = _Watched(info["pid"], info["start"], check)
                for program in set(watched) - set(running):
                    del watched[program]
                for program, known in watched.items():
                    self._look(program, known, pool)
                if time.monotonic() - self._memory_looked >= MEMORY_EVERY_SECONDS:
                    self._memory_looked = time.monotonic()
                    self.look_at_memory(running)
                if time.monotonic() - self._disk_looked >= DISK_EVERY_SECONDS:
                    self._disk_looked = time.monotonic()
                    self.look_at_disk()
                    self.look_at_token_guesses()
                    self.look_at_channels_file()

    def look_at_memory(self, running: dict[str, dict]) -> None:
        """Asks each program of `running` (supervisord's infos by program) that holds more than
        the memory ceiling to stop, for supervisord to start it afresh; kills one that has not
        stopped RECYCLE_STOP_SECONDS later."""
        now = time.monotonic()
        for pid, deadline in list(self._recycling.items()):
            if _resident_mb(pid) is None:
                del self._recycling[pid]
            elif now >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._recycling[pid] = float("inf")  # forgotten once gone, not asked again
        ceiling = self.settings.memory_ceiling_mb
        for program, info in running.items():
            pid = info["pid"]
            if info["name"] in NOT_RECYCLED or pid in self._recycling:
                continue
            resident = _resident_mb(pid)
            if resident is None or resident <= ceiling:
                continue
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            self._recycling[pid] = now + RECYCLE_STOP_SECONDS
            self._notify(
                f"{program} restarted at its memory ceiling",
                f"{program} (pid {pid}) held {resident:.0f} MB resident, over "
                f"WEBTV_MEMORY_CEILING_MB ({ceiling}): asked to stop for supervisord to start "
                "it afresh. If that comes often, it leaks: `benchmarks/memory_soak.py` measures "
                "each program's growth.",
                "warning",
            )

    def look_at_disk(self) -> None:
        """Alerts when the data folder's disk runs short of space, and when it has room again
        (twice the threshold, so that a disk at the edge does not alert on every look)."""
        low = self.settings.disk_low_mb * 2**20
        try:
            free = shutil.disk_usage(self.settings.data_dir).free
        except OSError as error:
            log.warning("the data folder's free space is unknown: %s", error)
            return
        where = self.settings.data_dir.resolve()
        if not self.disk_low and free < low:
            self.disk_low = True
            self._notify(
                "the data folder's disk is full",
                f"{free / 2**20:.0f} MB free on the disk of {where} (under WEBTV_DISK_LOW_MB, "
                f"{self.settings.disk_low_mb}): clips are not made (their runs fail), the "
                "channels air what their caches hold. Free space there (or grow the disk): "
                "production and the caches resume by themselves.",
                "error",
            )
        elif self.disk_low and free >= 2 * low:
            self.disk_low = False
            self._notify(
                "the data folder's disk has room again",
                f"{free / 2**20:.0f} MB free on the disk of {where}: production resumes.",
                "info",
            )

    def look_at_channels_file(self) -> None:
        """Applies the channels file once it differs from what the stack runs: `webtv reload`
        runs on its own (it restarts this watchdog), its output in the supervisor's logs. A
        file that does not load changes nothing and is alerted, once for each version of it."""
        path = self.settings.channels_file
        try:
            info = path.stat()
        except OSError as error:
            log.warning("the channels file cannot be read: %s", error)
            return
        version = (info.st_ino, info.st_mtime_ns, info.st_size)
        reloading = self._reload is not None and self._reload.poll() is None
        if version == self._channels_version or reloading:
            return
        self._channels_version = version
        try:
            channels = load_channels(path)
        except ChannelConfigError as error:
            self._notify(
                "the channels file is broken: nothing changed",
                f"{path} does not load, so the stack goes on with the channels it has: {error}",
                "error",
            )
            return
        if not channels_differ(self.settings.data_dir, channels):
            return
        log.info("%s changed: reloading the stack's channels", path)
        with reload_log(self.settings.data_dir).open("ab") as output:
            self._reload = subprocess.Popen(
                webtv_command("reload"),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not stopped with this watchdog, which it restarts
            )

    def look_at_token_guesses(self) -> None:
        """Alerts, once a window, when GUESSES_ALERTED wrong operator tokens reached the viewer
        service within GUESS_WINDOW_SECONDS (its count restarts at 0 with a new data folder)."""
        total = wrong_tokens_counted(self.settings.data_dir)
        now = time.monotonic()
        self._guess_counts = [
            (at, count) for at, count in self._guess_counts if now - at <= GUESS_WINDOW_SECONDS
        ] + [(now, total)]
        first = self._guess_counts[0][1]
        guessed = total - first if total >= first else total
        if guessed >= GUESSES_ALERTED and now >= self._guesses_alerted_until:
            self._guesses_alerted_until = now + GUESS_WINDOW_SECONDS
            self._notify(
                "the operator token is being guessed",
                f"{guessed} wrong operator tokens reached the viewer service in the last "
                f"{GUESS_WINDOW_SECONDS / 60:.0f} minutes (its log names the addresses; each is "
                "held to 5 a minute). If no operator mistyped it, change WEBTV_OPERATOR_TOKEN.",
                "warning",
            )

    def _look(self, program: str, known: _Watched, pool: ThreadPoolExecutor) -> None:
        check, now = known.check, time.time()
        if check is None:
            return
        in_a_row = max(check.failures, 1)
        while known.probes and known.probes[0].done():  # answers are taken in the looks' order
            why = known.probes.popleft().result()
            known.passed = known.passed or why is None
            if not known.passed and now - known.started < check.grace:
                why = None  # still starting
            known.failures = known.failures + 1 if why else 0
            if why and known.failures >= in_a_row:
                self._kill(program, known.pid, why)
                known.failures = 0
        # At most `in_a_row` looks at once: a hung program holds no more of the pool's workers.
        if now >= known.next_look and len(known.probes) < in_a_row:
            known.next_look = now + check.every
            known.probes.append(pool.submit(check.failing))

    def _kill(self, program: str, pid: int, why: str) -> None:
        """Kills the hung program's process group (its children, nginx's workers and a
        playout's publisher, with it); supervisord restarts it."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        message = f"{program} (pid {pid}) hung: {why}; killed for supervisord to restart it"
        self._notify(f"{program} hung and was restarted", message, "warning")

    def _notify(self, title: str, message: str, severity: str) -> None:
        """Logs, and puts the alert in the outbox for delivery."""
        log.log(logging.INFO if severity == "info" else logging.WARNING, "%s: %s", title, message)
        if self.outbox.receivers:
            self.outbox.put(title, message, severity)
