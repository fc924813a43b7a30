"""`webtv`: run the channel stack, add clips, check a channels file."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import yaml

from webtv_dagster.channels import ChannelConfigError, load_channels
from webtv_dagster.embedded_s3 import start_embedded_s3
from webtv_dagster.instance import instance_config, postgres_configured, write_instance_yaml
from webtv_dagster.playout.supervisor import (
    PlayoutStartError,
    ensure_playout,
    launch_playout,
    playout_status,
    stop_playout,
)
from webtv_dagster.rtmp_server import HLS_JS, start_rtmp_server
from webtv_dagster.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_KEYS = {"AWS_ACCESS_KEY_ID": "webtv", "AWS_SECRET_ACCESS_KEY": "webtv-embedded-secret"}


def _check_channels(settings: Settings) -> dict[str, str]:
    """The channels of the settings' file, slug: title; exits with the file's problem."""
    try:
        channels = load_channels(settings.channels_file)
    except ChannelConfigError as error:
        sys.exit(f"webtv: {error}")
    titles = {channel.slug: channel.title for channel in channels.channels}
    print(f"webtv: channels from {settings.channels_file}: {', '.join(titles)}")
    return titles


def _embedded_s3_port(settings: Settings) -> int | None:
    """The port to serve S3 on when the endpoint is loopback and embedding is not turned off."""
    if os.environ.get("WEBTV_EMBEDDED_S3", "1") == "0":
        return None
    endpoint = urlparse(settings.s3_endpoint_url)
    if endpoint.hostname in {"127.0.0.1", "localhost"}:
        return endpoint.port or 80
    return None


def _dagster_home(settings: Settings) -> Path:
    home = (settings.data_dir / "dagster").resolve()
    write_instance_yaml(home, postgres=postgres_configured())
    return home


def command_up(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    titles = _check_channels(settings)
    # Children (code server, runs, playout) start elsewhere: give them absolute paths.
    os.environ["WEBTV_DATA_DIR"] = str(settings.data_dir.resolve())
    settings = Settings.from_env()
    for variable, value in EMBEDDED_KEYS.items():
        os.environ.setdefault(variable, value)
    if args.local_spaces:
        models = _launch_local_spaces(args.local_spaces, args.spaces_port, args.spaces_delay)
        routed = _channels_on_local_spaces(settings, models)
        os.environ["WEBTV_CHANNELS_FILE"] = str(routed)
        urls = ", ".join(url for model in models.values() for url in model["spaces"])
        print(f"webtv: local Spaces on {urls}; channels routed through them in {routed}")
    with contextlib.ExitStack() as running:  # whatever started is stopped, in reverse order
        port = _embedded_s3_port(settings)
        if port is not None:
            embedded = start_embedded_s3(
                (settings.data_dir / "seaweedfs").resolve(),
                port,
                settings.s3_bucket,
                os.environ["AWS_ACCESS_KEY_ID"],
                os.environ["AWS_SECRET_ACCESS_KEY"],
            )
            running.callback(embedded.stop)
            print(f"webtv: SeaweedFS S3 on {embedded.endpoint_url}, bucket {settings.s3_bucket!r}")
        rtmp = start_rtmp_server(
            settings.data_dir / "nginx", titles, settings.rtmp_port, settings.hls_port,
            settings.data_dir,
        )  # fmt: skip
        running.callback(rtmp.stop)
        print(f"webtv: watch on http://127.0.0.1:{settings.hls_port}/")
        if not HLS_JS.exists():
            print(f"webtv: {HLS_JS} is missing (scripts/setup installs it): the viewer "
                  "plays in browsers with native HLS only")  # fmt: skip
        for slug in titles:
            print(f"webtv: {slug}: RTMP {rtmp.publish_url(slug)}, HLS {rtmp.hls_url(slug)}")
            if not playout_status(settings.data_dir, slug).running:
                launch_playout(settings.data_dir, slug)
            running.callback(stop_playout, settings.data_dir, slug)
        home = _dagster_home(settings)
        os.environ["DAGSTER_HOME"] = str(home)
        print(f"webtv: Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})")
        # Run from DAGSTER_HOME so that the instance there is the only dagster.yaml in sight.
        dagster = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev",
             "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)],
            cwd=home,
            # A shell starts background jobs with SIGINT ignored; dagster dev needs it to stop.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        # dagster dev shuts its webserver, daemon and code servers down on SIGINT: forward
        # SIGINT and SIGTERM to it, and stop the servers once it has exited.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: dagster.send_signal(signal.SIGINT))
        return dagster.wait()


def mirror_urls(slug: str) -> list[str]:
    """Extra RTMP outputs of a channel (Twitch, YouTube...), with their stream keys, from
    WEBTV_MIRRORS_<SLUG> (comma-separated; SLUG upper-case with underscores)."""
    variable = "WEBTV_MIRRORS_" + slug.upper().replace("-", "_")
    return [url.strip() for url in os.environ.get(variable, "").split(",") if url.strip()]


def command_playout(args: argparse.Namespace) -> int:
    import logging

    from webtv_dagster.channels import find_channel
    from webtv_dagster.playout.channel import ChannelPlayout
    from webtv_dagster.playout.supervisor import hold_playout_lock
    from webtv_dagster.storage import MediaStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    channel = find_channel(load_channels(settings.channels_file), args.channel)
    data_dir = settings.data_dir.resolve()
    store = MediaStore(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
    )
    main_url = f"rtmp://127.0.0.1:{settings.rtmp_port}/{channel.slug}/live"
    mirrors = mirror_urls(channel.slug)
    try:
        with hold_playout_lock(data_dir, channel.slug):
            playout = ChannelPlayout(
                store, channel, [main_url, *mirrors], data_dir,
                cache_bytes=settings.playout_cache_mb * 2**20,
            )  # fmt: skip
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: playout.shutdown())
            print(f"webtv: {channel.slug} on air to {main_url} and {len(mirrors)} mirror(s)",
                  flush=True)  # fmt: skip
            playout.run()
    except PlayoutStartError as error:
        sys.exit(f"webtv: {error}")
    return 0


def command_channel(args: argparse.Namespace) -> int:
    """Operator control of one channel's playout: status, start, stop, restart."""
    settings = Settings.from_env()
    if args.channel not in _check_channels(settings):
        sys.exit(f"webtv: no channel {args.channel!r} in {settings.channels_file}")
    data_dir = settings.data_dir.resolve()
    try:
        if args.action == "stop":
            was_running = stop_playout(data_dir, args.channel)
            print(f"webtv: {args.channel} {'stopped' if was_running else 'was not running'}")
        elif args.action in {"start", "restart"}:
            restart = args.action == "restart"
            done = ensure_playout(data_dir, args.channel, settings.playout_stale_seconds, restart)
            print(f"webtv: {args.channel} {done}")
    except PlayoutStartError as error:
        sys.exit(f"webtv: {error}")
    status = playout_status(data_dir, args.channel)
    print(json.dumps(dataclasses.asdict(status), indent=2))
    return 0


def command_add_clips(args: argparse.Namespace) -> int:
    import dagster as dg

    from webtv_dagster.channels import find_channel
    from webtv_dagster.clips import next_clip_ids
    from webtv_dagster.defs.partitions import clip_partitions

    settings = Settings.from_env()
    channel = find_channel(load_channels(settings.channels_file), args.channel)
    os.environ.setdefault("DAGSTER_HOME", str(_dagster_home(settings)))
    with dg.DagsterInstance.get() as instance:
        existing = instance.get_dynamic_partitions(clip_partitions.name)
        keys = [clip.key for clip in next_clip_ids(existing, channel.slug, args.count)]
        instance.add_dynamic_partitions(clip_partitions.name, keys)
    print(f"webtv: added {keys[0]} .. {keys[-1]}; clip_production_sensor requests their runs")
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
            "kind": "gradio", "family": family, "spaces": urls,
            "max_concurrent_calls": replicas,
        }  # fmt: skip
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


def command_spaces(args: argparse.Namespace) -> int:
    models = _launch_local_spaces(args.replicas, args.base_port, args.delay)
    print("webtv: local Spaces are up; add these models to a channels file and name them in")
    print("its channels' backends (README: 'Real models'). Ctrl-C stops them.\n")
    print(yaml.safe_dump({"models": models}, sort_keys=False), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    return 0


def command_worker(args: argparse.Namespace) -> int:
    """Becomes a Celery worker for the runs of WEBTV_EXECUTOR=celery deployments: it executes
    run steps taken from the broker's `dagster` queue, against the instance of DAGSTER_HOME."""
    settings = Settings.from_env()
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


def command_instance_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(instance_config(postgres=args.postgres), sort_keys=False), end="")
    return 0


def command_check(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.file:
        settings = settings.model_copy(update={"channels_file": Path(args.file)})
    _check_channels(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webtv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start SeaweedFS and the Dagster UI + daemon")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.add_argument(
        "--local-spaces", type=int, default=0, metavar="REPLICAS",
        help="serve REPLICAS local Spaces per model family and route every channel through them",
    )  # fmt: skip
    up.add_argument("--spaces-port", type=int, default=7860, help="first local Space's port")
    up.add_argument("--spaces-delay", type=float, default=0.0, help="seconds added per call")
    up.set_defaults(run=command_up)
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
    instance = commands.add_parser(
        "instance-config", help="print the Dagster instance settings (dagster.yaml) to deploy"
    )
    instance.add_argument("--postgres", action="store_true", help="with PostgreSQL storage")
    instance.set_defaults(run=command_instance_config)
    check = commands.add_parser("check", help="validate a channels file")
    check.add_argument("file", nargs="?")
    check.set_defaults(run=command_check)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
