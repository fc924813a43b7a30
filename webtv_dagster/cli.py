"""`webtv`: run the channel stack, add clips, check a channels file.

The parser and thin commands: each reads the settings once (in `main`) and hands them to the
wing that does the work (stack/, playout/, audience/, spaces/, defs/).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from webtv_dagster import hide_dagster_maturity_warnings
from webtv_dagster.channels import ChannelConfigError, ChannelsFile, find_channel, load_channels
from webtv_dagster.playout.process import PlayoutStartError, hold_playout_lock, playout_status
from webtv_dagster.public_site import (
    PublicFolderError,
    monitoring_socket,
    rtmp_statistics_url,
    viewer_service_socket,
)
from webtv_dagster.settings import Settings, SettingsError
from webtv_dagster.stack.instance import dagster_home, instance_config, open_instance
from webtv_dagster.stack.nginx import publish_url, write_stack_rtmp_config
from webtv_dagster.stack.nginx_process import RtmpServerError, become_nginx
from webtv_dagster.stack.playouts import ensure_playout, stop_playout
from webtv_dagster.stack.processes import wait_until_serving
from webtv_dagster.stack.supervisord import StackSupervisor
from webtv_dagster.stack.up import StackError, run_stack, stack_status, stop_stack
from webtv_dagster.storage import S3Reader


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
    channels = _load_channels(settings)
    _check_local_presets(channels)
    _check_titles_and_bug_images(channels)
    return {channel.slug: channel.title for channel in channels.channels}


def _check_alert_receivers(settings: Settings) -> None:
    """Exits if an alert URL is one no alert could reach (an Apprise URL it does not know)."""
    from webtv_dagster.stack.alerts import check_notifiers, notifiers_of

    if problems := check_notifiers(notifiers_of(settings)):
        sys.exit("webtv: " + "; ".join(problems))


def _check_titles_and_bug_images(channels: ChannelsFile) -> None:
    """Exits if a channel's title is one its word list refuses (the ident asset asks its judge
    too) or its bug image cannot be drawn."""
    from webtv_dagster.backends.moderator import WordListModerator
    from webtv_dagster.media.ffmpeg import MediaToolError
    from webtv_dagster.production.graphics import checked_bug_image
    from webtv_dagster.production.ident import TitleRefused, judge_title

    for channel in channels.channels:
        try:
            judge_title(channel, [WordListModerator(channel)])
            if channel.graphics.bug_image is not None:
                checked_bug_image(channel.graphics.bug_image)
        except (TitleRefused, MediaToolError) as error:
            sys.exit(f"webtv: {error}")


def _check_local_presets(channels: ChannelsFile) -> None:
    """Exits if a model preset is served on this machine (a loopback Space) and this machine
    lacks the libraries that run it."""
    from urllib.parse import urlsplit

    from webtv_dagster.spaces.generators import MODELS_EXTRA, models_extra_installed

    loopback = {"127.0.0.1", "localhost", "::1"}
    for name, model in channels.models.items():
        preset = getattr(model, "preset", None)
        spaces = getattr(model, "spaces", [])
        local = any(urlsplit(space).hostname in loopback for space in spaces)
        if preset and local and not models_extra_installed():
            sys.exit(
                f"webtv: the model {name!r} (preset {preset}) is served on this machine, "
                f"which lacks torch, diffusers and transformers: {MODELS_EXTRA}"
            )


def command_up(args: argparse.Namespace, settings: Settings) -> int:
    """Runs the whole stack under supervisord until Ctrl-C or SIGTERM, then stops it in order."""
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(
            f"webtv: the Dagster UI launches any job and has no password of its own: it stays "
            f"on loopback, not {args.host}; reach it from outside through the public front "
            "(`webtv caddyfile`, docs/going-public.md)"
        )
    channels = _load_channels(settings)
    _check_alert_receivers(settings)
    if args.local_spaces:
        _require_gradio()
        from webtv_dagster.spaces.apps import channels_on_local_spaces, launch_local_spaces

        models = launch_local_spaces(args.local_spaces, args.spaces_port, args.spaces_delay)
        routed = channels_on_local_spaces(settings.channels_file, settings.data_dir, models)
        settings = settings.model_copy(update={"channels_file": routed})
        urls = ", ".join(url for model in models.values() for url in model["spaces"])
        print(f"webtv: local Spaces on {urls}; channels routed through them in {routed}")
    try:
        return run_stack(settings, channels, args.host, args.port)
    except StackError as error:
        sys.exit(f"webtv: {error}")


def command_down(args: argparse.Namespace, settings: Settings) -> int:
    """Stops a stack that `webtv up` runs elsewhere (another terminal, a service)."""
    supervisor = StackSupervisor.connect(settings.data_dir)
    if supervisor is None:
        print(f"webtv: no stack runs on {settings.data_dir}")
        return 0
    stop_stack(settings.data_dir, supervisor, settings.stop_grace_seconds)
    return 0


def command_reload(args: argparse.Namespace, settings: Settings) -> int:
    """Applies the channels file to the running stack; a broken file changes nothing."""
    from webtv_dagster.stack.up import reload_stack

    _check_channels(settings)  # exits with the file's problems, before anything changes
    try:
        done = reload_stack(settings, load_channels(settings.channels_file))
    except StackError as error:
        sys.exit(f"webtv: {error}")
    print(f"webtv: reloaded {settings.channels_file}: {'; '.join(done) or 'nothing changed'}")
    return 0


def command_status(args: argparse.Namespace, settings: Settings) -> int:
    """Every supervised process with its state, and each channel's playout."""
    try:
        slugs = [channel.slug for channel in load_channels(settings.channels_file).channels]
    except ChannelConfigError as error:
        sys.exit(f"webtv: {error}")
    print("\n".join(stack_status(settings.data_dir, slugs)))
    return 0


def command_rtmp_server(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised RTMP/HLS server, nginx. Without a root whose configuration `webtv up`
    wrote, writes one from the settings under the data folder (a systemd unit's way)."""
    root = Path(args.root) if args.root else None
    become_nginx(root or write_stack_rtmp_config(settings, _check_channels(settings)))


def command_when_serving(args: argparse.Namespace, settings: Settings) -> int:
    """Becomes `command` once the Unix socket accepts connections (a supervised program that
    needs another to be up first)."""
    command = [part for part in args.command if part != "--"]
    if not wait_until_serving(Path(args.socket), timeout=300):
        sys.exit(f"webtv: nothing serves {args.socket} after 300 s; not starting {command[0]}")
    os.execv(command[0], command)


def _media_store(settings: Settings):
    from webtv_dagster.media_store import MediaStore  # boto3: only the commands that need it

    return MediaStore.from_settings(settings)


def command_viewer_service(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised viewer service: answers what nginx proxies to it (stage previews from the
    bucket, shot requests, the guide, XMLTV, the dump button)."""
    from webtv_dagster.audience.viewer_service import ViewerServiceError, ViewerSite, serve_viewer
    from webtv_dagster.audience.watching import WatchingCount

    socket_path = Path(args.socket) if args.socket else viewer_service_socket(settings.data_dir)
    channels = load_channels(settings.channels_file)
    site = ViewerSite(
        store=_media_store(settings),
        channels=channels,
        data_dir=settings.data_dir,
        operator_token=settings.operator_token.get_secret_value(),
    )
    watching = WatchingCount(
        settings.data_dir,
        [channel.slug for channel in channels.channels],
        rtmp_statistics_url(settings.hls_port),
    ).start()
    try:
        serve_viewer(socket_path, site)
    except ViewerServiceError as error:
        sys.exit(f"webtv: {error}")
    finally:
        watching.close()
    return 0


def command_chat_bot(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised chat bot of one channel: `!add <idea>` in its chat becomes a shot
    request; requested clips are announced before they air. Stops on SIGTERM."""
    from webtv_dagster.audience.chat_bot import ChatBotConfigError, run_chat_bot

    channels = load_channels(settings.channels_file)
    channel = find_channel(channels, args.channel)
    try:
        run_chat_bot(
            channel,
            channels.models,
            settings.data_dir,
            threading.Event(),
            notify_socket=settings.notify_socket,
        )
    except ChatBotConfigError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_playout(args: argparse.Namespace, settings: Settings) -> int:
    """One channel on air until SIGINT or SIGTERM (supervisord and systemd run it)."""
    from webtv_dagster.playout.channel import ChannelPlayout
    from webtv_dagster.playout.publisher import keep_clip_buffers_off_the_heap

    keep_clip_buffers_off_the_heap()
    channel = find_channel(load_channels(settings.channels_file), args.channel)
    data_dir = settings.data_dir.resolve()
    # A playout only reads: the small reader where the keys are set (boto3 would cost each
    # channel 40 MB), boto3 where its own credential chain (an instance role) is needed.
    keys_set = settings.aws_access_key_id and settings.aws_secret_access_key
    store = S3Reader.from_settings(settings) if keys_set else _media_store(settings)
    main_url = publish_url(settings.rtmp_port, channel.slug)
    try:
        # Under a new supervisor, it takes the channel over from one a dead stack left.
        with hold_playout_lock(data_dir, channel.slug, take_over=True):
            playout = ChannelPlayout(
                store,
                channel,
                main_url,
                data_dir,
                cache_bytes=settings.playout_cache_mb * 2**20,
                notify_socket=settings.notify_socket,
                publisher_ffmpeg=settings.publisher_ffmpeg,
                as_run_days=settings.as_run_days,
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
            from webtv_dagster.defs.air.ident import materialize_missing_ident

            print(
                f"webtv: {args.action}ing {args.channel} (up to 120 s: a first start makes "
                "its ident)",
                flush=True,
            )
            materialize_missing_ident(settings, args.channel)  # before the channel's first air
            done = ensure_playout(
                data_dir,
                args.channel,
                settings.playout_stale_seconds,
                args.action == "restart",
                progress=lambda line: print(f"webtv: {line}", flush=True),
            )
            print(f"webtv: {args.channel} {done}")
    except PlayoutStartError as error:
        sys.exit(f"webtv: {error}")
    status = playout_status(data_dir, args.channel)
    print(json.dumps(dataclasses.asdict(status), indent=2))
    return 0


def command_as_run(args: argparse.Namespace, settings: Settings) -> int:
    """A channel's as-run log as CSV on stdout, for the days asked (today's by default)."""
    from webtv_dagster.playout.as_run import AsRunLog, as_csv, day_of
    from webtv_dagster.playout.state import PlayoutFolder

    data_dir = settings.data_dir.resolve()
    folder = PlayoutFolder.of(data_dir, args.channel).as_run
    if not folder.is_dir():  # a channel since removed from the file keeps its log
        playouts = PlayoutFolder.of(data_dir, args.channel).path.parent
        logged = [p.name for p in sorted(playouts.glob("*")) if PlayoutFolder(p).as_run.is_dir()]
        sys.exit(
            f"webtv: no as-run log of {args.channel!r} in {data_dir} "
            f"(there are: {', '.join(logged) or 'none'})"
        )
    first = args.since or day_of(time.time())
    last = args.until or max(first, day_of(time.time()))
    sys.stdout.write(as_csv(AsRunLog(folder, settings.as_run_days).between(first, last)))
    return 0


def command_add_clips(args: argparse.Namespace, settings: Settings) -> int:
    from webtv_dagster.lib.clip_records import add_clips
    from webtv_dagster.playout.state import aired_through_of
    from webtv_dagster.production.planning import check_clip_count

    channel = find_channel(load_channels(settings.channels_file), args.channel)
    aired_through = aired_through_of(settings.data_dir, channel.slug)
    try:
        check_clip_count(args.count)
        with open_instance(settings) as instance:
            added = add_clips(instance, channel, args.count, aired_through)
    except ValueError as error:
        sys.exit(f"webtv: {error}")
    print(
        f"webtv: added {added[0].key} .. {added[-1].key}; clip_production_sensor requests "
        "their runs"
    )
    return 0


def command_monitoring(args: argparse.Namespace, settings: Settings) -> int:
    """/metrics, /healthz and /readyz where no watchdog of `webtv up` serves them (systemd
    units, a Kubernetes pod): the channels' metrics, and with --systemd each unit's state."""
    from webtv_dagster.stack.metrics import StackMetrics, serve_monitoring
    from webtv_dagster.stack.systemd_units import systemd_units

    looked: list[dict] = []  # systemd's last answer: one `systemctl show` a scrape

    def units() -> list[dict]:
        looked[:] = systemd_units() if args.systemd else []
        return looked

    metrics = StackMetrics(
        settings.data_dir,
        [channel.slug for channel in load_channels(settings.channels_file).channels],
        units,
        lambda: {unit["name"]: unit["restarts"] for unit in looked},
        rtmp_statistics_url(settings.hls_port),
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = serve_monitoring(
        monitoring_socket(settings.data_dir),
        metrics,
        lambda: True,  # it answers: what is alive here is systemd's or the kubelet's to say
        settings.operator_token.get_secret_value(),
    )
    print(f"webtv: monitoring on {monitoring_socket(settings.data_dir)}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


def command_watchdog(args: argparse.Namespace, settings: Settings) -> int:
    """The supervised watchdog of `webtv up`: kills hung programs for supervisord to restart."""
    from webtv_dagster.stack.metrics import StackMetrics, serve_monitoring
    from webtv_dagster.stack.watchdog import Watchdog

    supervisor = StackSupervisor.connect(settings.data_dir)
    if supervisor is None:
        sys.exit(f"webtv: no stack runs on {settings.data_dir}: nothing to watch")
    watchdog = Watchdog(settings, supervisor, args.ui, dagster_home(settings))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: watchdog.stop.set())
    slugs = [channel.slug for channel in load_channels(settings.channels_file).channels]
    metrics = StackMetrics(
        settings.data_dir,
        slugs,
        lambda: watchdog.processes,
        lambda: dict(watchdog.restarts),
        rtmp_statistics_url(settings.hls_port),
    )
    monitoring = serve_monitoring(
        monitoring_socket(settings.data_dir),
        metrics,
        watchdog.alive,
        settings.operator_token.get_secret_value(),
    )
    try:
        watchdog.run()
    finally:
        monitoring.shutdown()
    return 0


def _require_gradio() -> None:
    """Exits with the install command if this install lacks the local Spaces' gradio."""
    from webtv_dagster.spaces import SPACES_EXTRA, gradio_installed

    if not gradio_installed():
        sys.exit(f"webtv: the local Spaces are served by gradio, not installed: {SPACES_EXTRA}")


def command_spaces(args: argparse.Namespace, settings: Settings) -> int:
    _require_gradio()
    if args.model:
        models = _serve_model_spaces(args.model, args.host, args.base_port, args.queue)
    else:
        from webtv_dagster.spaces.apps import launch_local_spaces

        models = launch_local_spaces(args.replicas, args.base_port, args.delay)
    print("webtv: local Spaces are up; add these models to a channels file and name them in")
    print("its channels' backends (docs/models.md). Ctrl-C stops them.\n")
    print(yaml.safe_dump({"models": models}, sort_keys=False), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    return 0


def _serve_model_spaces(
    specs: list[str], host: str, base_port: int, queue_size: int
) -> dict[str, dict]:
    """Serves each real model of `specs` (NAME=FOLDER[,FOLDER]) on its own port; returns the
    `models:` entries that call them. Exits with what is missing (the extra, weights)."""
    from webtv_dagster.spaces.apps import Workshop
    from webtv_dagster.spaces.generators import (
        MODELS_EXTRA,
        MissingWeights,
        ModelsExtraMissing,
        models_extra_installed,
    )

    if not models_extra_installed():
        sys.exit(f"webtv: real models need torch, diffusers and transformers: {MODELS_EXTRA}")
    from webtv_dagster.spaces.model_apps import ModelSpec, launch_model_space

    workshop, models = Workshop(), {}
    try:
        for offset, text in enumerate(specs):
            spec = ModelSpec.parse(text)
            space = launch_model_space(spec, base_port + offset, queue_size, workshop, host)
            models[spec.name] = {
                "kind": "gradio",
                "family": space.family,
                "preset": spec.name,
                "spaces": [space.url],
                "max_concurrent_calls": 1,
            }
    except (ValueError, MissingWeights, ModelsExtraMissing) as error:
        sys.exit(f"webtv: {error}")
    return models


def command_caddyfile(args: argparse.Namespace, settings: Settings) -> int:
    """Writes the public front's Caddyfile: the viewer over https, the UI behind a password."""
    from webtv_dagster.stack.public_front import (
        PublicFront,
        PublicFrontError,
        caddyfile,
        password_hash,
    )

    if bool(args.cert) != bool(args.key):
        sys.exit("webtv: give --cert and --key together (or neither: Caddy gets a certificate)")
    front = PublicFront(
        site=args.site,
        viewer_port=settings.hls_port,
        ui_port=args.ui_port,
        public_viewer_port=args.port,
        public_ui_port=args.ui_public_port,
        ui_user=args.ui_user,
        certificate=Path(args.cert).resolve() if args.cert else None,
        key=Path(args.key).resolve() if args.key else None,
    )
    try:
        hashed = password_hash(settings.ui_password.get_secret_value())
    except PublicFrontError as error:
        sys.exit(f"webtv: {error} (WEBTV_UI_PASSWORD)")
    Path(args.output).write_text(caddyfile(front, hashed))
    print(f"webtv: wrote {args.output}; run it with: caddy run --config {args.output}")
    return 0


def command_kubernetes_air(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the manifests of the air pod (nginx, the viewer service, every playout)."""
    from webtv_dagster.stack.kubernetes import air_manifests

    try:  # not announced: what is printed is the manifests alone, to pipe to kubectl
        slugs = [channel.slug for channel in load_channels(settings.channels_file).channels]
    except ChannelConfigError as error:
        sys.exit(f"webtv: {error}")
    print(yaml.safe_dump_all(air_manifests(slugs, args.image, settings), sort_keys=False))
    return 0


def command_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Becomes a Celery worker for the runs of WEBTV_EXECUTOR=celery deployments."""
    from webtv_dagster.stack.worker import become_worker

    become_worker(settings, args.name, args.concurrency)


def command_systemd_units(args: argparse.Namespace, settings: Settings) -> int:
    from webtv_dagster.stack.systemd_units import render_units

    units = render_units(
        Path(args.output),
        settings.data_dir,
        Path(args.env_file).resolve(),
        args.user,
        args.ui_port,
        args.code_server_port,
        postgres=bool(settings.dagster_pg_host),
    )
    print(f"webtv: wrote {', '.join(unit.name for unit in units)} to {args.output}")
    print(
        "webtv: install them in /etc/systemd/system, then: systemctl daemon-reload && "
        "systemctl enable --now webtv.target webtv-playout@<slug> (docs/deployment.md)"
    )
    return 0


def command_alert(args: argparse.Namespace, settings: Settings) -> int:
    """Sends an alert to WEBTV_ALERT_WEBHOOK_URL and each of WEBTV_ALERT_URLS (systemd's
    OnFailure= unit calls this); fails naming each receiver that did not take it."""
    from webtv_dagster.stack.alerts import notifiers_of, send_to_all

    receivers = notifiers_of(settings)
    if not receivers:
        sys.exit(f"webtv: no WEBTV_ALERT_WEBHOOK_URL or WEBTV_ALERT_URLS: not sent: {args.title}")
    if refused := send_to_all(receivers, args.title, args.details):
        sys.exit("webtv: " + "; ".join(refused))
    return 0


def command_instance_config(args: argparse.Namespace, settings: Settings) -> int:
    print(yaml.safe_dump(instance_config(postgres=args.postgres), sort_keys=False), end="")
    return 0


def command_check(args: argparse.Namespace, settings: Settings) -> int:
    if args.file:
        settings = settings.model_copy(update={"channels_file": Path(args.file)})
    _check_channels(settings)
    _check_alert_receivers(settings)
    return 0


def configure_logging() -> None:
    """Once for every command: this project's own lines (the playout's, the viewer service's,
    the chat bot's) from INFO, the libraries' (Dagster's storage, gradio) from WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(
        lambda record: record.levelno >= logging.WARNING or record.name.startswith(__package__)
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _iso_day(text: str) -> str:
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webtv", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="run the whole stack under supervisord (S3, RTMP/HLS server and viewer, "
        "playouts, chat bots, Dagster UI, daemon and code server) until Ctrl-C",
    )
    up.add_argument("--host", default="127.0.0.1", help="the Dagster UI's address")
    up.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
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
    reload = commands.add_parser(
        "reload", help="apply the channels file to the running stack (channels added live)"
    )
    reload.set_defaults(run=command_reload)
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
    as_run = commands.add_parser(
        "as-run", help="print a channel's as-run log (what went out, when) as CSV"
    )
    as_run.add_argument("channel")
    as_run.add_argument("--since", type=_iso_day, help="first day, YYYY-MM-DD (default today)")
    as_run.add_argument("--until", type=_iso_day, help="last day, YYYY-MM-DD (default today)")
    as_run.set_defaults(run=command_as_run)
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
    monitoring = commands.add_parser(
        "monitoring", help="serve /metrics, /healthz and /readyz without webtv up's watchdog"
    )
    monitoring.add_argument(
        "--systemd", action="store_true", help="with each webtv unit's state from systemd"
    )
    monitoring.set_defaults(run=command_monitoring)
    watchdog = commands.add_parser(
        "watchdog", help="kill hung programs of a running stack for supervisord to restart"
    )
    watchdog.add_argument("--ui", default="127.0.0.1:3000", help="the Dagster UI's host:port")
    watchdog.set_defaults(run=command_watchdog)
    spaces = commands.add_parser(
        "spaces", help="serve local Gradio Spaces: look-alikes for every family, or real models"
    )
    spaces.add_argument("--replicas", type=int, default=1, help="replicas per model family")
    spaces.add_argument("--base-port", type=int, default=7860)
    spaces.add_argument("--delay", type=float, default=0.0, help="seconds added to each call")
    spaces.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=FOLDER[,FOLDER]",
        help="serve a real model from its weights folder instead of the look-alikes: "
        "ltx-video=LTX, ltx-upscaler=UPSAMPLER,LTX, musicgen=MUSICGEN (docs/models.md)",
    )
    spaces.add_argument(
        "--queue", type=int, default=8, help="calls a real model's Space holds waiting"
    )
    spaces.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address real models' Spaces listen on (a GPU host serving other machines: "
        "its own address, behind a firewall or proxy)",
    )
    spaces.set_defaults(run=command_spaces)
    front = commands.add_parser(
        "caddyfile",
        help="write the public front's Caddyfile: the viewer over https, the Dagster UI behind "
        "WEBTV_UI_PASSWORD (docs/going-public.md)",
    )
    front.add_argument("output", help="the Caddyfile to write")
    front.add_argument("--site", required=True, help="the public name: tv.example.org")
    front.add_argument("--port", type=int, default=443, help="the viewer's public port")
    front.add_argument("--ui-public-port", type=int, default=8443, help="the UI's public port")
    front.add_argument("--ui-port", type=int, default=3000, help="the Dagster UI's local port")
    front.add_argument("--ui-user", default="operator")
    front.add_argument("--cert", help="certificate file (default: Caddy gets one, ACME)")
    front.add_argument("--key", help="the certificate's key file")
    front.set_defaults(run=command_caddyfile)
    air = commands.add_parser(
        "kubernetes-air",
        help="print the Kubernetes manifests of the air: one pod with nginx, the viewer "
        "service and every channel's playout (docs/deployment.md)",
    )
    air.add_argument("--image", required=True, help="the project's image (deploy/kubernetes)")
    air.set_defaults(run=command_kubernetes_air)
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
    alert = commands.add_parser(
        "alert", help="send an alert to WEBTV_ALERT_WEBHOOK_URL and WEBTV_ALERT_URLS"
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    hide_dagster_maturity_warnings()
    args = parser().parse_args(argv)
    configure_logging()
    try:
        return args.run(args, Settings.from_env())
    except (ChannelConfigError, PublicFolderError, RtmpServerError, SettingsError) as error:
        print(f"webtv: {error}", file=sys.stderr)  # no traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
