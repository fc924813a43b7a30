"""`webtv`: run the channel stack, add clips, check a channels file."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

from webtv_dagster import hide_dagster_maturity_warnings
from webtv_dagster.channels import ChannelConfigError, ChannelsFile, find_channel, load_channels
from webtv_dagster.embedded_s3 import PORT_OFFSETS, weed_command, weed_environment
from webtv_dagster.instance import (
    drain_runs,
    instance_config,
    postgres_configured,
    write_instance_yaml,
)
from webtv_dagster.playout.supervisor import (
    PlayoutStartError,
    ensure_playout,
    playout_status,
    stop_playout,
)
from webtv_dagster.processes import port_is_free
from webtv_dagster.rtmp_server import (
    HLS_JS,
    WORKER_USER,
    RtmpServerError,
    kill_leftover_workers,
    mirrors_of,
    nginx_command,
    public_folder,
    publish_url,
    viewer_service_socket,
    worker_account,
    write_rtmp_config,
)
from webtv_dagster.settings import Settings, SettingsError
from webtv_dagster.stack import (
    PLAYOUT_GROUP,
    StackSupervisor,
    dagster_programs,
    media_programs,
    supervisor_folder,
    supervisord_binary,
    write_supervisord_conf,
)

EMBEDDED_KEYS = {"AWS_ACCESS_KEY_ID": "webtv", "AWS_SECRET_ACCESS_KEY": "webtv-embedded-secret"}


def _load_channels(settings: Settings) -> ChannelsFile:
    """The settings' channels file, announced; exits with the file's problems."""
    try:
        channels = load_channels(settings.channels_file)
    except ChannelConfigError as error:
        sys.exit(f"webtv: {error}")
    slugs = ", ".join(channel.slug for channel in channels.channels)
    print(f"webtv: channels from {settings.channels_file}: {slugs}")
    return channels


def _check_channels(settings: Settings) -> dict[str, str]:
    """The channels of the settings' file, slug: title; exits with the file's problems."""
    return {channel.slug: channel.title for channel in _load_channels(settings).channels}


def _chat_bots(channels: ChannelsFile) -> list[str]:
    """The channels whose chat bot can start: those taking requests with a `chat`, and the token
    in the environment (a missing one is said here, once, rather than by a bot dying)."""
    slugs = []
    for channel in channels.channels:
        chat = channel.requests.chat
        if not channel.requests.enabled or chat is None:
            continue
        if os.environ.get(chat.token_env):
            slugs.append(channel.slug)
        else:
            print(
                f"webtv: {channel.slug}: no chat bot: set {chat.token_env} to its Twitch token "
                "(docs/viewer-requests.md)"
            )
    return slugs


def _embedded_s3_port(settings: Settings) -> int | None:
    """The port to serve S3 on when the endpoint is loopback and embedding is not turned off."""
    if not settings.embedded_s3:
        return None
    endpoint = urlparse(settings.s3_endpoint_url)
    if endpoint.hostname in {"127.0.0.1", "localhost"}:
        return endpoint.port or 80
    return None


def _dagster_home(settings: Settings) -> Path:
    home = (settings.data_dir / "dagster").resolve()
    write_instance_yaml(home, postgres=postgres_configured())
    return home


def command_up(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the whole stack under supervisord until Ctrl-C or SIGTERM, then stops it in order
    (`stop_stack`)."""
    channels = _load_channels(settings)
    titles = {channel.slug: channel.title for channel in channels.channels}
    # Children (code server, runs, playout) start elsewhere: give them absolute paths.
    data_dir = settings.data_dir.resolve()
    settings = settings.model_copy(update={"data_dir": data_dir})
    os.environ["WEBTV_DATA_DIR"] = str(data_dir)
    for variable, value in EMBEDDED_KEYS.items():
        os.environ.setdefault(variable, value)
    for variable in set(os.environ) - set(weed_environment(dict(os.environ))):
        del os.environ[variable]  # WEED_* would override the embedded S3's security settings
    if StackSupervisor.connect(data_dir) is not None:
        sys.exit(f"webtv: a stack already runs on {data_dir} (`webtv status`, `webtv down`)")
    if args.local_spaces:
        models = _launch_local_spaces(args.local_spaces, args.spaces_port, args.spaces_delay)
        routed = _channels_on_local_spaces(settings, models)
        os.environ["WEBTV_CHANNELS_FILE"] = str(routed)
        settings = settings.model_copy(update={"channels_file": routed})
        urls = ", ".join(url for model in models.values() for url in model["spaces"])
        print(f"webtv: local Spaces on {urls}; channels routed through them in {routed}")
    s3_port = _embedded_s3_port(settings)
    s3_command = None
    if s3_port is not None:
        s3_command = weed_command((data_dir / "seaweedfs").resolve(), s3_port, settings.s3_bucket)
    rtmp_root = public_folder(data_dir)
    write_rtmp_config(
        rtmp_root,
        titles,
        settings.rtmp_port,
        settings.hls_port,
        data_dir,
        mirrors_of(settings, list(titles)),
    )
    home = _dagster_home(settings)
    os.environ["DAGSTER_HOME"] = str(home)
    programs = [
        *media_programs(data_dir, list(titles), rtmp_root, s3_command, _chat_bots(channels)),
        *dagster_programs(home, args.host, args.port),
    ]
    conf = write_supervisord_conf(data_dir, programs)
    busy = [port for port in _stack_ports(settings, s3_port, args.port) if not port_is_free(port)]
    if busy:
        sys.exit(
            f"webtv: ports {busy} are in use (another webtv up?): set WEBTV_RTMP_PORT, "
            "WEBTV_HLS_PORT, WEBTV_S3_ENDPOINT_URL or --port to others"
        )
    supervisord = subprocess.Popen(
        [supervisord_binary(), "-c", str(conf)],
        # Its own session: Ctrl-C reaches webtv up alone, which stops the stack in order.
        start_new_session=True,
    )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    supervisor = _wait_for_supervisor(data_dir, supervisord)
    # Imported now, while idle, so that a stop does not spend seconds on it.
    threading.Thread(target=importlib.import_module, args=("dagster",), daemon=True).start()
    if s3_port is not None:
        print(f"webtv: SeaweedFS S3 on http://127.0.0.1:{s3_port}, bucket {settings.s3_bucket!r}")
    print(f"webtv: watch on http://127.0.0.1:{settings.hls_port}/")
    if os.geteuid() == 0 and worker_account(rtmp_root, data_dir) is None:
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
    print(f"webtv: Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})")
    print(
        f"webtv: every process supervised by supervisord ({conf}); `webtv status` lists them",
        flush=True,
    )
    while not stopping.wait(1) and supervisord.poll() is None:
        pass
    if supervisord.poll() is None:
        print("webtv: stopping", flush=True)
        stop_stack(data_dir, supervisor, settings.stop_grace_seconds)
    return supervisord.wait()


def _stack_ports(settings: Settings, s3_port: int | None, ui_port: int) -> list[int]:
    ports = [settings.rtmp_port, settings.hls_port, ui_port]
    if s3_port is not None:
        ports += [s3_port, *(s3_port + offset for offset in PORT_OFFSETS.values())]
    return ports


def _wait_for_supervisor(data_dir: Path, supervisord: subprocess.Popen) -> StackSupervisor:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if supervisord.poll() is not None:
            log = supervisor_folder(data_dir) / "supervisord.log"
            sys.exit(f"webtv: supervisord exited at start-up; see {log}")
        supervisor = StackSupervisor.connect(data_dir)
        if supervisor is not None:
            return supervisor
        time.sleep(0.2)
    supervisord.kill()
    sys.exit("webtv: supervisord did not answer within 30 s")


def stop_stack(data_dir: Path, supervisor: StackSupervisor, grace_seconds: float) -> None:
    """Stops the stack without losing work: the Dagster daemon first (no new runs, no sensor
    ticks), then runs in flight get `grace_seconds` to finish and are canceled after (their
    clips are booked again at the next start), then everything else, playouts at once."""
    started = time.monotonic()
    # What serves viewers and operators goes at once, beside the daemon.
    supervisor.stop_soon(f"{PLAYOUT_GROUP}:*")
    supervisor.stop_soon("dagster-webserver")
    if supervisor.process("dagster-daemon") is not None:
        # The grace period runs while the daemon stops; nothing is canceled before it is down.
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
    supervisor.stop_all_soon()
    pid_file = supervisor_folder(data_dir) / "supervisord.pid"
    supervisor.shutdown()
    while pid_file.exists():  # supervisord removes it as it exits
        time.sleep(0.1)
    print(f"webtv: stopped in {time.monotonic() - started:.1f} s", flush=True)


def command_down(args: argparse.Namespace, settings: Settings) -> int:
    """Stops a stack that `webtv up` runs elsewhere (another terminal, a service)."""
    supervisor = StackSupervisor.connect(settings.data_dir)
    if supervisor is None:
        print(f"webtv: no stack runs on {settings.data_dir}")
        return 0
    stop_stack(settings.data_dir, supervisor, settings.stop_grace_seconds)
    return 0


def command_status(args: argparse.Namespace, settings: Settings) -> int:
    """Every supervised process with its state, and each channel's playout."""
    supervisor = StackSupervisor.connect(settings.data_dir)
    if supervisor is None:
        print(f"webtv: no stack runs on {settings.data_dir} (start it with `webtv up`)")
    else:
        now = time.time()
        for info in supervisor.processes():
            group, name = info["group"], info["name"]
            name = name if group == name else f"{group}:{name}"
            since = f"up {now - info['start']:.0f} s" if info["statename"] == "RUNNING" else ""
            print(
                f"{name:32} {info['statename']:9} pid {info['pid'] or '-':<8} {since} "
                f"{info['spawnerr'] or ''}".rstrip()
            )
    try:
        slugs = [channel.slug for channel in load_channels(settings.channels_file).channels]
    except ChannelConfigError as error:
        sys.exit(f"webtv: {error}")
    for slug in slugs:
        status = playout_status(settings.data_dir, slug)
        age = status.seconds_since_update
        print(
            f"channel {slug}: {'on air' if status.running else 'off air'}"
            + (f", last clip queued {age:.0f} s ago" if age is not None else "")
        )
    return 0


def command_rtmp_server(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised RTMP/HLS server: clears workers a killed predecessor left behind, then
    becomes nginx (same pid, so supervisord or systemd signals nginx itself). Without a root
    whose configuration `webtv up` wrote, writes one from the settings under the data folder
    (a systemd unit's way)."""
    if args.root:
        root = Path(args.root)
    else:
        root = public_folder(settings.data_dir)
        titles = _check_channels(settings)
        write_rtmp_config(
            root,
            titles,
            settings.rtmp_port,
            settings.hls_port,
            settings.data_dir,
            mirrors_of(settings, list(titles)),
        )
    command = nginx_command(root)
    if killed := kill_leftover_workers(root):
        print(f"webtv: killed nginx workers {killed} left by a dead master", flush=True)
    os.execv(command[0], command)


def command_when_serving(args: argparse.Namespace, settings: Settings) -> int:
    """Becomes `command` once the Unix socket accepts connections (a supervised program that
    needs another to be up first)."""
    from webtv_dagster.stack import wait_until_serving

    command = [part for part in args.command if part != "--"]
    if not wait_until_serving(Path(args.socket), timeout=300):
        sys.exit(f"webtv: nothing serves {args.socket} after 300 s; not starting {command[0]}")
    os.execv(command[0], command)


def _media_store(settings: Settings):
    from webtv_dagster.storage import MediaStore  # boto3: only the commands that need it

    return MediaStore.from_settings(settings)


def command_viewer_service(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised viewer service: answers what nginx proxies to it (stage previews from the
    bucket, shot requests, the guide, XMLTV, the dump button)."""
    import logging

    from webtv_dagster.viewer_service import (
        ViewerServiceError,
        ViewerSite,
        serve_viewer,
    )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    socket_path = Path(args.socket) if args.socket else viewer_service_socket(settings.data_dir)
    site = ViewerSite(
        store=_media_store(settings),
        channels=load_channels(settings.channels_file),
        data_dir=settings.data_dir,
        operator_token=settings.operator_token.get_secret_value(),
    )
    try:
        serve_viewer(socket_path, site)
    except ViewerServiceError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_chat_bot(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised chat bot of one channel: `!add <idea>` in its chat becomes a shot
    request; requested clips are announced before they air. Stops on SIGTERM."""
    import logging

    from webtv_dagster.chat_bot import ChatBotConfigError, run_chat_bot

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    channels = load_channels(settings.channels_file)
    channel = find_channel(channels, args.channel)
    try:
        run_chat_bot(channel, channels.models, settings.data_dir, threading.Event())
    except ChatBotConfigError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_playout(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from webtv_dagster.playout.channel import ChannelPlayout
    from webtv_dagster.playout.supervisor import hold_playout_lock

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    channel = find_channel(load_channels(settings.channels_file), args.channel)
    data_dir = settings.data_dir.resolve()
    store = _media_store(settings)
    main_url = publish_url(settings.rtmp_port, channel.slug)
    try:
        with hold_playout_lock(data_dir, channel.slug):
            playout = ChannelPlayout(
                store,
                channel,
                main_url,
                data_dir,
                cache_bytes=settings.playout_cache_mb * 2**20,
            )
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: playout.shutdown())
            print(f"webtv: {channel.slug} on air to {main_url}", flush=True)
            playout.run()
    except PlayoutStartError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_channel(args: argparse.Namespace, settings: Settings) -> int:
    """Operator control of one channel's playout: status, start, stop, restart."""
    if args.channel not in _check_channels(settings):
        sys.exit(f"webtv: no channel {args.channel!r} in {settings.channels_file}")
    data_dir = settings.data_dir.resolve()
    try:
        if args.action == "stop":
            was_running = stop_playout(data_dir, args.channel)
            print(f"webtv: {args.channel} {'stopped' if was_running else 'was not running'}")
        elif args.action in {"start", "restart"}:
            restart = args.action == "restart"
            print(
                f"webtv: {args.action}ing {args.channel} (up to 120 s: a first start makes "
                "its ident)",
                flush=True,
            )
            from webtv_dagster.defs.assets.ident import materialize_missing_ident

            os.environ.setdefault("DAGSTER_HOME", str(_dagster_home(settings)))
            materialize_missing_ident(settings, args.channel)  # before the channel's first air
            done = ensure_playout(
                data_dir,
                args.channel,
                settings.playout_stale_seconds,
                restart,
                progress=lambda line: print(f"webtv: {line}", flush=True),
            )
            print(f"webtv: {args.channel} {done}")
    except PlayoutStartError as error:
        sys.exit(f"webtv: {error}")
    status = playout_status(data_dir, args.channel)
    print(json.dumps(dataclasses.asdict(status), indent=2))
    return 0


def command_add_clips(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from webtv_dagster.defs.clip_records import add_clips
    from webtv_dagster.planning import check_clip_count
    from webtv_dagster.playout.state import aired_through_of

    try:
        check_clip_count(args.count)
        channel = find_channel(load_channels(settings.channels_file), args.channel)
    except ValueError as error:
        sys.exit(f"webtv: {error}")
    os.environ.setdefault("DAGSTER_HOME", str(_dagster_home(settings)))
    with dg.DagsterInstance.get() as instance:
        try:
            aired_through = aired_through_of(settings.data_dir, channel.slug)
            added = add_clips(instance, channel, args.count, aired_through)
        except ValueError as error:
            sys.exit(f"webtv: {error}")
    print(
        f"webtv: added {added[0].key} .. {added[-1].key}; clip_production_sensor requests "
        "their runs"
    )
    return 0


def _launch_local_spaces(replicas: int, base_port: int, delay: float) -> dict[str, dict]:
    """Serves `replicas` local Spaces per family in this process; returns their `models`."""
    from webtv_dagster.spaces.apps import FAMILIES, Behaviour, Workshop, launch

    behaviour, workshop = Behaviour(delay_seconds=delay), Workshop()
    models: dict[str, dict] = {}
    port = base_port
    for family in FAMILIES:
        urls = [launch(family, port + i, behaviour, workshop).url for i in range(replicas)]
        port += replicas
        models[f"local-{family.replace('_', '-')}"] = {
            "kind": "gradio",
            "family": family,
            "spaces": urls,
            "max_concurrent_calls": replicas,
        }
    return models


def _channels_on_local_spaces(settings: Settings, models: dict[str, dict]) -> Path:
    """A copy of the channels file whose channels call the local Spaces for every video and
    music stage (the prompt writer stays as configured: there is no local LLM)."""
    document = yaml.safe_load(settings.channels_file.read_text(encoding="utf-8"))
    document.setdefault("models", {}).update(models)
    for channel in document["channels"]:
        channel.setdefault("backends", {}).update(
            {model["family"]: name for name, model in models.items()}
        )
    routed = (settings.data_dir / "channels.local-spaces.yaml").resolve()
    routed.parent.mkdir(parents=True, exist_ok=True)
    routed.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    load_channels(routed)
    return routed


def command_spaces(args: argparse.Namespace, settings: Settings) -> int:
    models = _launch_local_spaces(args.replicas, args.base_port, args.delay)
    print("webtv: local Spaces are up; add these models to a channels file and name them in")
    print("its channels' backends (docs/models.md). Ctrl-C stops them.\n")
    print(yaml.safe_dump({"models": models}, sort_keys=False), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    return 0


def command_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Becomes a Celery worker for the runs of WEBTV_EXECUTOR=celery deployments: it executes
    run steps taken from the broker's `dagster` queue, against the instance of DAGSTER_HOME."""
    if "DAGSTER_HOME" not in os.environ:
        os.environ["DAGSTER_HOME"] = str(_dagster_home(settings))
    os.environ["WEBTV_EXECUTOR"] = "celery"  # the jobs it reconstructs run steps on Celery too
    # dagster_celery.app reads its broker from a module named dagster_celery_config.
    config_dir = (settings.data_dir / "celery" / args.name).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    backend = settings.celery_backend or settings.celery_broker
    (config_dir / "dagster_celery_config.py").write_text(
        f"broker_url = {settings.celery_broker!r}\nresult_backend = {backend!r}\n"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(config_dir), os.environ.get("PYTHONPATH")])
    )
    pool = ["--pool", "solo"] if args.concurrency == 1 else ["--concurrency", str(args.concurrency)]
    celery = str(Path(sys.executable).with_name("celery"))
    command = [
        celery,
        "-A",
        "dagster_celery.app",
        "worker",
        "-Q",
        "dagster",
        "-n",
        f"{args.name}@%h",
        "--prefetch-multiplier=1",
        "--loglevel",
        "INFO",
        *pool,
    ]
    print(f"webtv: worker {args.name} on the `dagster` queue of the Celery broker", flush=True)
    os.execv(celery, command)  # the worker is this process: signals reach Celery directly


def command_systemd_units(args: argparse.Namespace, settings: Settings) -> int:
    from webtv_dagster.systemd_units import render_units

    units = render_units(
        Path(args.output),
        settings.data_dir,
        Path(args.env_file).resolve(),
        args.user,
        args.ui_port,
        args.code_server_port,
    )
    print(f"webtv: wrote {', '.join(unit.name for unit in units)} to {args.output}")
    print(
        "webtv: install them in /etc/systemd/system, then: systemctl daemon-reload && "
        "systemctl enable --now webtv.target webtv-playout@<slug> (docs/deployment.md)"
    )
    return 0


def command_alert(args: argparse.Namespace, settings: Settings) -> int:
    """Sends an alert to WEBTV_ALERT_WEBHOOK_URL (systemd's OnFailure= unit calls this)."""
    from webtv_dagster.alerts import AlertError, notifier

    webhook = notifier(settings.alert_webhook_url.get_secret_value())
    if webhook is None:
        sys.exit(f"webtv: no WEBTV_ALERT_WEBHOOK_URL: alert not sent: {args.title}")
    try:
        webhook.send(args.title, args.details)
    except AlertError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_instance_config(args: argparse.Namespace, settings: Settings) -> int:
    print(yaml.safe_dump(instance_config(postgres=args.postgres), sort_keys=False), end="")
    return 0


def command_check(args: argparse.Namespace, settings: Settings) -> int:
    if args.file:
        settings = settings.model_copy(update={"channels_file": Path(args.file)})
    _check_channels(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    hide_dagster_maturity_warnings()
    parser = argparse.ArgumentParser(prog="webtv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start SeaweedFS and the Dagster UI + daemon")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.add_argument(
        "--local-spaces",
        type=int,
        default=0,
        metavar="REPLICAS",
        help="serve REPLICAS local Spaces per model family and route every channel through them",
    )
    up.add_argument("--spaces-port", type=int, default=7860, help="first local Space's port")
    up.add_argument("--spaces-delay", type=float, default=0.0, help="seconds added per call")
    up.set_defaults(run=command_up)
    down = commands.add_parser("down", help="stop a stack `webtv up` runs, in order")
    down.set_defaults(run=command_down)
    status = commands.add_parser("status", help="every supervised process and channel")
    status.set_defaults(run=command_status)
    rtmp = commands.add_parser(
        "rtmp-server",
        help="run the RTMP/HLS server (nginx) in the foreground, as supervisord and systemd do",
    )
    rtmp.add_argument("root", nargs="?", help="a folder whose nginx.conf webtv up wrote")
    rtmp.set_defaults(run=command_rtmp_server)
    viewer = commands.add_parser(
        "viewer-service",
        help="serve what the viewer's nginx proxies (stage previews, shot "
        "requests, guide, XMLTV, dump button), as supervisord and systemd run it",
    )
    viewer.add_argument(
        "--socket",
        help="Unix socket (default: viewer-service.sock in the data dir's public folder)",
    )
    viewer.set_defaults(run=command_viewer_service)
    chat = commands.add_parser(
        "chat-bot",
        help="run a channel's chat bot (`!add <idea>` in its "
        "Twitch chat), as supervisord and systemd run it",
    )
    chat.add_argument("channel", help="channel slug")
    chat.set_defaults(run=command_chat_bot)
    when = commands.add_parser(
        "when-serving", help="(internal) run a command once a socket accepts connections"
    )
    when.add_argument("socket")
    when.add_argument("command", nargs=argparse.REMAINDER)
    when.set_defaults(run=command_when_serving)
    add = commands.add_parser("add-clips", help="add new clips to a channel")
    add.add_argument("channel")
    add.add_argument("count", type=int)
    add.set_defaults(run=command_add_clips)
    playout = commands.add_parser("playout", help="air a channel until stopped")
    playout.add_argument("channel")
    playout.set_defaults(run=command_playout)
    control = commands.add_parser("channel", help="status, start, stop or restart a playout")
    control.add_argument("action", choices=["status", "start", "stop", "restart"])
    control.add_argument("channel")
    control.set_defaults(run=command_channel)
    spaces = commands.add_parser("spaces", help="serve local Gradio Spaces for every family")
    spaces.add_argument("--replicas", type=int, default=1, help="replicas per model family")
    spaces.add_argument("--base-port", type=int, default=7860)
    spaces.add_argument("--delay", type=float, default=0.0, help="seconds added to each call")
    spaces.set_defaults(run=command_spaces)
    worker = commands.add_parser("worker", help="run a Celery worker for run steps")
    worker.add_argument("--name", default="webtv", help="worker name (unique per machine)")
    worker.add_argument("--concurrency", type=int, default=1, help="steps at once")
    worker.set_defaults(run=command_worker)
    units = commands.add_parser("systemd-units", help="write systemd units for this host")
    units.add_argument("output", help="folder to write the units to")
    units.add_argument("--user", default="webtv", help="the account the services run as")
    units.add_argument(
        "--env-file",
        default="/etc/webtv/webtv.env",
        help="settings and secrets of the services (mode 0600)",
    )
    units.add_argument("--ui-port", type=int, default=3000)
    units.add_argument("--code-server-port", type=int, default=4266)
    units.set_defaults(run=command_systemd_units)
    alert = commands.add_parser("alert", help="send an alert to WEBTV_ALERT_WEBHOOK_URL")
    alert.add_argument("title")
    alert.add_argument("--details", default="")
    alert.set_defaults(run=command_alert)
    instance = commands.add_parser(
        "instance-config", help="print the Dagster instance settings (dagster.yaml) to deploy"
    )
    instance.add_argument("--postgres", action="store_true", help="with PostgreSQL storage")
    instance.set_defaults(run=command_instance_config)
    check = commands.add_parser("check", help="validate a channels file")
    check.add_argument("file", nargs="?")
    check.set_defaults(run=command_check)
    args = parser.parse_args(argv)
    try:
        return args.run(args, Settings.from_env())
    except (ChannelConfigError, RtmpServerError, SettingsError) as error:  # no traceback
        print(f"webtv: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
