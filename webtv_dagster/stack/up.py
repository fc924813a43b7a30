"""The whole stack on one machine (`webtv up`): every long-running process under supervisord
until Ctrl-C or SIGTERM, then stopped in order without losing work (`stop_stack`, also
`webtv down`)."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import SecretStr

from webtv_dagster.channels import ChannelsFile
from webtv_dagster.media.stream import is_rtmp_publisher
from webtv_dagster.playout.process import playout_status
from webtv_dagster.public_site import WORKER_USER, public_folder
from webtv_dagster.secrets import write_private
from webtv_dagster.settings import Settings, child_environment, named_secret
from webtv_dagster.stack.embedded_s3 import (
    PORT_OFFSETS,
    remove_own_sockets,
    sockets_of_others,
    weed_command,
    weed_environment,
)
from webtv_dagster.stack.instance import dagster_home, drain_runs
from webtv_dagster.stack.nginx import (
    HLS_JS,
    publish_url,
    reload_nginx,
    worker_account,
    write_stack_rtmp_config,
)
from webtv_dagster.stack.nginx_process import nginx_of
from webtv_dagster.stack.processes import (
    STACK_MARKER,
    end_leftovers,
    listening_on,
    port_is_free,
    stack_of,
    stack_processes,
)
from webtv_dagster.stack.programs import (
    chat_channel,
    chat_program,
    dagster_programs,
    media_programs,
    playout_channel,
    playout_program,
    watchdog_program,
)
from webtv_dagster.stack.supervisord import (
    Program,
    StackSupervisor,
    supervisor_folder,
    supervisord_binary,
    write_supervisord_conf,
)

# The keys every data folder's embedded S3 had before each got its own (documented, so any
# process of the machine could use them): kept by a data folder made with them.
SHARED_EMBEDDED_KEYS = {
    "aws_access_key_id": "webtv",
    "aws_secret_access_key": "webtv-embedded-secret",
}
SUPERVISOR_START_SECONDS = 30


class StackError(RuntimeError):
    """The stack cannot start here; the message says why and what to change."""


def embedded_s3_port(settings: Settings) -> int | None:
    """The port to serve S3 on when the endpoint is loopback and embedding is not turned off."""
    if not settings.embedded_s3:
        return None
    endpoint = urlparse(settings.s3_endpoint_url)
    if endpoint.hostname in {"127.0.0.1", "localhost"}:
        return endpoint.port or 80
    return None


def chat_bot_channels(channels: ChannelsFile) -> list[str]:
    """The channels whose chat bot can start: those taking requests with a `chat`, and the token
    in the environment (a missing one is said here, once, rather than by a bot dying)."""
    slugs = []
    for channel in channels.channels:
        chat = channel.requests.chat
        if not channel.requests.enabled or chat is None:
            continue
        if missing := [name for name in chat.secret_variables if not named_secret(name)]:
            print(
                f"webtv: {channel.slug}: no chat bot: set {' and '.join(missing)} "
                "(docs/viewer-requests.md#connecting-a-real-twitch-channel)"
            )
        else:
            slugs.append(channel.slug)
    return slugs


def _stack_ports(settings: Settings, s3_port: int | None, ui_port: int) -> list[int]:
    ports = [settings.rtmp_port, settings.hls_port, ui_port]
    if s3_port is not None:
        ports += [s3_port, *(s3_port + offset for offset in PORT_OFFSETS.values())]
    return ports


def embedded_s3_keys_path(data_dir: Path) -> Path:
    return data_dir / "s3-keys.json"


def embedded_s3_keys(data_dir: Path) -> dict[str, str]:
    """The embedded S3's keys where none are configured: made for the data folder at its first
    start, and kept there readable by its owner alone (s3-keys.json), so that no other account
    of the machine can read or rewrite the bucket (the playlists, the take-downs). A data folder
    whose S3 was made with the old shared keys keeps them."""
    path = embedded_s3_keys_path(data_dir)
    with contextlib.suppress(FileNotFoundError):
        return json.loads(path.read_text())
    if (data_dir / "seaweedfs").exists():
        keys = SHARED_EMBEDDED_KEYS
    else:
        keys = {
            "aws_access_key_id": f"webtv-{secrets.token_hex(4)}",
            "aws_secret_access_key": secrets.token_urlsafe(32),
        }
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(keys))
    return keys


def _with_embedded_keys(settings: Settings) -> Settings:
    """The settings with the embedded S3's keys where none are configured."""
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        return settings
    keys = embedded_s3_keys(settings.data_dir)
    return settings.model_copy(update={name: SecretStr(value) for name, value in keys.items()})


def _wait_for_supervisor(data_dir: Path, supervisord: subprocess.Popen) -> StackSupervisor:
    deadline = time.monotonic() + SUPERVISOR_START_SECONDS
    while time.monotonic() < deadline:
        if supervisord.poll() is not None:
            log = supervisor_folder(data_dir) / "supervisord.log"
            raise StackError(f"supervisord exited at start-up; see {log}")
        supervisor = StackSupervisor.connect(data_dir)
        if supervisor is not None:
            return supervisor
        time.sleep(0.2)
    supervisord.kill()
    raise StackError(f"supervisord did not answer within {SUPERVISOR_START_SECONDS} s")


def _on_air(command_line: str) -> bool:
    """Whether a process of the stack is on the air path: a playout or its FFmpeg publisher.
    Left running, they air on until the new supervisor's playouts take over (each asks the one
    it replaces to stop once it is ready: hold_playout_lock)."""
    return " playout " in command_line or is_rtmp_publisher(command_line)


@contextlib.contextmanager
def _managing(data_dir: Path) -> Iterator[None]:
    """Held by the `webtv up` that manages the stack of `data_dir`, for as long as it runs
    (the kernel drops it however that process dies); refuses a second manager."""
    folder = supervisor_folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manager.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise StackError(
                f"webtv up (pid {lock.read().strip() or '?'}) already runs the stack of "
                f"{data_dir}: `webtv status`, `webtv down`"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _stacks_holding(ports: list[int]) -> set[str]:
    """The data folders of the stacks whose processes listen on any of `ports`: what to name
    when they are taken, rather than every stack of the machine. An nginx whose supervisord
    died carries no marker (its title is written over its environment) and no marked ancestor:
    it is known by the pid file in the public folder of a stack whose other processes run."""
    holders = listening_on(ports)
    folders = {folder for pid in holders if (folder := stack_of(pid)) is not None}
    for folder in {folder for _, folder in stack_processes()} - folders:
        if holders & set(nginx_of(public_folder(Path(folder)))):
            folders.add(folder)
    return folders


def _refuse_busy_ports(
    settings: Settings, s3_port: int | None, ui_port: int, ours: list[int]
) -> None:
    ports = [port for port in _stack_ports(settings, s3_port, ui_port) if port not in ours]
    if s3_port is not None and (planted := sockets_of_others(s3_port)):
        raise StackError(
            f"{', '.join(map(str, planted))}: made by another account where the embedded S3 "
            "puts its sockets; remove them, or set WEBTV_S3_ENDPOINT_URL to another port"
        )
    busy = [port for port in ports if not port_is_free(port)]
    if not busy:
        return
    others = sorted(_stacks_holding(busy) - {str(settings.data_dir)})
    held_by = f"the stack of {', '.join(others)}" if others else "another program"
    raise StackError(
        f"ports {busy} are in use by {held_by}: set WEBTV_RTMP_PORT, WEBTV_HLS_PORT, "
        "WEBTV_S3_ENDPOINT_URL or --port to others, or stop it"
    )


def run_stack(settings: Settings, channels: ChannelsFile, host: str, port: int) -> int:
    """Runs the whole stack of `channels` under supervisord, the Dagster UI on `host`:`port`,
    until Ctrl-C or SIGTERM, then stops it in order (`stop_stack`); returns supervisord's exit
    status. Raises StackError when it cannot start.

    A stack of the same data folder that outlived its `webtv up` is taken over: its running
    supervisord gets the new configuration (programs unchanged run on untouched). Of the
    programs a dead supervisord left running, the playouts air on until the new supervisor's
    take over (each new one asks the one it replaces to stop once it is ready), the others are
    ended and started again, so that the air stops only for the moments of the hand-overs."""
    titles = {channel.slug: channel.title for channel in channels.channels}
    # Children (code server, runs, playout) start elsewhere: give them absolute paths.
    data_dir = settings.data_dir.resolve()
    # A new data folder is its owner's alone (Dagster's storage holds viewers' names); what
    # nginx serves goes to a public folder of its own (public_site.public_folder).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _managing(data_dir):
        plan = StackPlan.of(settings, channels, host, port)
        plan.write_rtmp_config()
        settings, home, s3_port, rtmp_root = plan.settings, plan.home, plan.s3_port, plan.rtmp_root
        conf = write_supervisord_conf(data_dir, plan.programs)
        plan.record()
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        supervisord = None
        supervisor = StackSupervisor.connect(data_dir)
        if supervisor is not None:
            changed = supervisor.apply_configuration()
            print(
                f"webtv: took over the stack that runs on {data_dir}; programs started again "
                f"for the new configuration: {', '.join(changed) or 'none'}",
                flush=True,
            )
        else:
            replaced = end_leftovers(data_dir, keep=_on_air)
            if replaced:
                print(
                    f"webtv: replaced {len(replaced)} process(es) the last stack of {data_dir} "
                    "left running when its supervisor died",
                    flush=True,
                )
            # A left nginx runs on until the new one takes its place (nginx_process.py ends it
            # first): its ports are ours.
            ours = [settings.rtmp_port, settings.hls_port] if nginx_of(rtmp_root) else []
            _refuse_busy_ports(settings, s3_port, port, ours)
            supervisord = subprocess.Popen(
                [supervisord_binary(), "-c", str(conf)],
                # Every process of the stack carries the marker (see STACK_MARKER); WEED_*
                # variables would override the embedded S3's security settings.
                env=weed_environment(child_environment(settings, **{STACK_MARKER: str(data_dir)})),
                # Its own session: Ctrl-C reaches webtv up alone, which stops the stack in
                # order; a webtv up that dies leaves it running, for the next to take over.
                start_new_session=True,
            )
            supervisor = _wait_for_supervisor(data_dir, supervisord)
        _announce(settings, titles, s3_port, rtmp_root, host, port, home, conf)

        def supervised() -> bool:
            if supervisord is not None:
                return supervisord.poll() is None
            return StackSupervisor.connect(data_dir) is not None

        while not stopping.wait(1) and supervised():
            pass
        if supervised():
            print("webtv: stopping", flush=True)
            stop_stack(data_dir, supervisor, settings.stop_grace_seconds)
        code = supervisord.wait() if supervisord is not None else 0
        if s3_port is not None and not supervised():
            remove_own_sockets(s3_port)
        return code


@dataclass(frozen=True)
class StackPlan:
    """What the stack of a channels file runs: its settings as its programs get them, its
    programs, and where nginx's configuration is (written by `of`)."""

    settings: Settings
    channels: ChannelsFile
    host: str
    port: int
    home: Path
    s3_port: int | None
    rtmp_root: Path
    programs: list[Program]

    @classmethod
    def of(cls, settings: Settings, channels: ChannelsFile, host: str, port: int) -> StackPlan:
        data_dir = settings.data_dir.resolve()
        home = dagster_home(
            settings.model_copy(update={"dagster_home": None, "data_dir": data_dir})
        )
        settings = settings.model_copy(update={"data_dir": data_dir, "dagster_home": home})
        s3_port = embedded_s3_port(settings)
        s3_command = None
        if s3_port is not None:
            settings = _with_embedded_keys(settings)
            s3_command = weed_command(data_dir / "seaweedfs", s3_port, settings.s3_bucket)
        slugs = [channel.slug for channel in channels.channels]
        rtmp_root = public_folder(data_dir)  # write_stack_rtmp_config's
        chat_slugs = chat_bot_channels(channels)
        programs = [
            *media_programs(data_dir, slugs, rtmp_root, s3_command, chat_slugs),
            *dagster_programs(home, host, port),
            watchdog_program(host, port),
        ]
        return cls(settings, channels, host, port, home, s3_port, rtmp_root, programs)

    def write_rtmp_config(self) -> None:
        titles = {channel.slug: channel.title for channel in self.channels.channels}
        write_stack_rtmp_config(self.settings, titles, self.rtmp_root)

    def stack_settings(self) -> dict[str, object]:
        """What of the settings shapes the stack beyond its channels (the channels file, the
        ports nginx listens on, every program but the channels' own), by variable name: no
        secret (a program's command line names none)."""
        settings = self.settings
        return {
            "WEBTV_CHANNELS_FILE": str(settings.channels_file.resolve()),
            "WEBTV_RTMP_PORT": settings.rtmp_port,
            "WEBTV_HLS_PORT": settings.hls_port,
            "WEBTV_HTTP_LISTEN": str(settings.http_listen),
            "WEBTV_TRUSTED_PROXIES": [str(network) for network in settings.trusted_proxies],
            "programs": {
                p.name: p.command
                for p in self.programs
                if not (playout_channel(p.name) or chat_channel(p.name))
            },
        }

    def record(self) -> None:
        """Keeps what `webtv reload` compares a new channels file and its own settings with,
        and where the UI is."""
        applied = {
            "host": self.host,
            "port": self.port,
            "settings": self.stack_settings(),
            "channels": _channel_records(self.channels),
        }
        write_private(_applied_path(self.settings.data_dir), json.dumps(applied, indent=2))


def _applied_path(data_dir: Path) -> Path:
    return supervisor_folder(data_dir) / "applied.json"


def _channel_records(channels: ChannelsFile) -> dict[str, dict]:
    return {c.slug: c.model_dump(mode="json") for c in channels.channels}


def channels_differ(data_dir: Path, channels: ChannelsFile) -> bool:
    """Whether `channels` differ from those the stack on `data_dir` last applied (True when
    that is not known)."""
    try:
        return json.loads(_applied_path(data_dir).read_text())["channels"] != _channel_records(
            channels
        )
    except (OSError, ValueError, KeyError):
        return True


def reload_log(data_dir: Path) -> Path:
    """What the reloads the watchdog starts say."""
    return supervisor_folder(data_dir) / "logs" / "reload.log"


def reload_stack(settings: Settings, channels: ChannelsFile) -> list[str]:
    """Applies a channels file to the stack running on the settings' data folder, touching
    only what changed: nginx takes its new configuration without a restart (a reload, when
    channels or mirrors came or went), supervisord starts the programs of new channels and
    stops those of channels gone, the playout and chat bot of a changed channel start again,
    and the programs that read the whole file (viewer service, watchdog; the code server when
    a schedule changed) start again. Channels unchanged air on untouched. Returns what it did,
    in words. Raises StackError (nothing changed) when no stack runs there."""
    data_dir = settings.data_dir.resolve()
    supervisor = StackSupervisor.connect(data_dir)
    if supervisor is None or not _applied_path(data_dir).exists():
        raise StackError(
            f"no stack of `webtv up` runs on {data_dir} to reload (webtv up starts one)"
        )
    with (supervisor_folder(data_dir) / "reload.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one reload at a time (an operator's, the watchdog's)
        return _reload(settings, channels, supervisor)


def _reload(settings: Settings, channels: ChannelsFile, supervisor: StackSupervisor) -> list[str]:
    data_dir = settings.data_dir.resolve()
    applied = json.loads(_applied_path(data_dir).read_text())
    before = applied["channels"]
    conf_before = (public_folder(data_dir) / "nginx.conf").read_text()
    settings = settings.model_copy(update={"data_dir": data_dir})
    plan = StackPlan.of(settings, channels, applied["host"], applied["port"])
    ours, theirs = plan.stack_settings(), applied["settings"]
    if differing := [
        name for name in theirs if json.dumps(ours.get(name)) != json.dumps(theirs[name])
    ]:
        raise StackError(
            "`webtv reload` runs with other settings than the stack it would change "
            f"({', '.join(differing)} differ): run it with the environment `webtv up` was "
            "given, or start the stack again with `webtv up`"
        )
    plan.write_rtmp_config()
    done = []
    if (plan.rtmp_root / "nginx.conf").read_text() != conf_before:
        reload_nginx(plan.rtmp_root)
        done.append("nginx reloaded")
    write_supervisord_conf(data_dir, plan.programs)
    if groups := supervisor.apply_configuration():
        done.append(f"programs added or removed: {', '.join(groups)}")
    after = _channel_records(channels)
    changed = [slug for slug in after if slug in before and before[slug] != after[slug]]
    restart = [
        program
        for slug in changed
        for program in (playout_program(slug), chat_program(slug))
        if program not in groups and supervisor.process(program) is not None
    ]
    schedules = [(s, c.get("schedule")) for s, c in sorted(after.items())]
    if schedules != [(s, c.get("schedule")) for s, c in sorted(before.items())]:
        restart.append("dagster-code-server")
    if before != after:
        # The watchdog last: it may be the one that runs this reload's command.
        restart += ["viewer-service", "watchdog"]
    # Recorded first: a watchdog started again finds the file applied.
    plan.record()
    for program in restart:
        supervisor.restart(program)
    if restart:
        done.append(f"restarted: {', '.join(restart)}")
    return done


def _announce(
    settings: Settings,
    titles: dict[str, str],
    s3_port: int | None,
    rtmp_root: Path,
    host: str,
    port: int,
    home: Path,
    conf: Path,
) -> None:
    """Says where everything of the stack is."""
    # Imported now, while idle, so that a stop does not spend seconds on it.
    threading.Thread(target=importlib.import_module, args=("dagster",), daemon=True).start()
    if s3_port is not None:
        print(f"webtv: SeaweedFS S3 on http://127.0.0.1:{s3_port}, bucket {settings.s3_bucket!r}")
    print(f"webtv: watch on http://127.0.0.1:{settings.hls_port}/")
    if os.geteuid() == 0 and worker_account(rtmp_root, settings.data_dir) is None:
        print(
            f"webtv: nginx's workers run as root: there is no account {WORKER_USER} with a "
            "named group to hand them to"
        )
    if not HLS_JS.exists():
        print(
            f"webtv: {HLS_JS} is missing (scripts/setup installs it): the viewer "
            "plays in browsers with native HLS only"
        )
    for slug in titles:
        print(
            f"webtv: {slug}: RTMP {publish_url(settings.rtmp_port, slug)}, "
            f"HLS http://127.0.0.1:{settings.hls_port}/hls/{slug}/live.m3u8"
        )
    print(f"webtv: Dagster UI on http://{host}:{port} (DAGSTER_HOME={home})")
    print(
        f"webtv: every process supervised by supervisord ({conf}); `webtv status` lists them",
        flush=True,
    )


def stack_status(data_dir: Path, slugs: list[str]) -> list[str]:
    """What `webtv status` says: every supervised process with its state, then each channel's
    playout."""
    lines = []
    supervisor = StackSupervisor.connect(data_dir)
    if supervisor is None:
        lines.append(f"webtv: no stack runs on {data_dir} (start it with `webtv up`)")
    else:
        now = time.time()
        for info in supervisor.processes():
            group, name = info["group"], info["name"]
            name = name if group == name else f"{group}:{name}"
            since = f"up {now - info['start']:.0f} s" if info["statename"] == "RUNNING" else ""
            lines.append(
                f"{name:32} {info['statename']:9} pid {info['pid'] or '-':<8} {since} "
                f"{info['spawnerr'] or ''}".rstrip()
            )
    for slug in slugs:
        status = playout_status(data_dir, slug)
        age = status.seconds_since_update
        lines.append(
            f"channel {slug}: {'on air' if status.running else 'off air'}"
            + (f", last clip queued {age:.0f} s ago" if age is not None else "")
        )
    return lines


def stop_stack(data_dir: Path, supervisor: StackSupervisor, grace_seconds: float) -> None:
    """Stops the stack without losing work: the Dagster daemon first (no new runs, no sensor
    ticks), then runs in flight get `grace_seconds` to finish and are canceled after (their
    clips are booked again at the next start), then everything else, playouts at once."""
    started = time.monotonic()
    # The watchdog first: a program being stopped must not look hung to it.
    supervisor.stop("watchdog")
    # What serves viewers and operators goes at once, beside the daemon.
    for info in supervisor.processes():  # all at once
        if playout_channel(info["name"]):
            supervisor.stop_soon(info["name"])
    supervisor.stop_soon("dagster-webserver")
    try:
        if supervisor.process("dagster-daemon") is not None:
            # The grace period runs while the daemon stops; nothing is canceled before it is
            # down.
            supervisor.stop_soon("dagster-daemon")
            drained = drain_runs(
                (data_dir / "dagster").resolve(),
                grace_seconds,
                before_cancel=lambda: supervisor.wait_stopped("dagster-daemon", timeout=60),
            )
            print(
                f"webtv: runs in flight: {drained['finished']} finished, {drained['canceled']} "
                "canceled and booked again for the next start",
                flush=True,
            )
    except Exception as error:  # the stack stops all the same: nothing may be left running
        print(f"webtv: runs in flight not drained ({error}); stopping all the same", flush=True)
    supervisor.stop_all_soon()
    pid_file = supervisor_folder(data_dir) / "supervisord.pid"
    supervisor.shutdown()
    while pid_file.exists():  # supervisord removes it as it exits
        time.sleep(0.1)
    # A playout a dead supervisor left airing hands over to its successor once that one is
    # ready: one stopped before that leaves it unsupervised, and nothing else would end it.
    if left := end_leftovers(data_dir.resolve(), keep=lambda _: False):
        print(f"webtv: ended {len(left)} process(es) a dead supervisor left running", flush=True)
    print(f"webtv: stopped in {time.monotonic() - started:.1f} s", flush=True)
