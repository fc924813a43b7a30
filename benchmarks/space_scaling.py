"""Clips per minute through the local Spaces with 1, 2 and 4 replicas per model family.

Each local Space answers one call at a time (like one GPU) and adds --delay seconds per call,
standing in for inference time, so that the figures measure our orchestration (failover pools,
load spreading, bounded concurrency, clips in flight) rather than these cores. Clips are made
with the plain production code (no Dagster), 4 x replicas clips in flight, on a throwaway
SeaweedFS. Each configuration makes --clips-per-replica x replicas clips, so that every
configuration carries the same load per replica and the four-call pipeline's fill and drain
weigh the same in each: the clips-per-minute ratio is then the throughput gained.

Usage: .venv/bin/python benchmarks/space_scaling.py [--clips-per-replica 4] [--delay 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.backends.registry import OfflineSettings, build_backends
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, StageBackends, load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.media_store import MediaStore
from webtv_dagster.model_endpoints import GradioSpacePool
from webtv_dagster.production.stages import ClipProduction
from webtv_dagster.spaces.apps import FAMILIES, Behaviour, Workshop, launch
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster_tests.servers import free_port_block, start_embedded_s3

STAGES = [
    "write_shot_prompt",
    "render_raw_take",
    "compose_music",
    "upscale_take",
    "interpolate_clip",
    "assemble_broadcast_clip",
]


def make_clip(production: ClipProduction, clip: ClipId) -> None:
    for stage in STAGES:
        getattr(production, stage)(clip)


def measure(replicas: int, clips: int, delay: float, store: MediaStore, workshop: Workshop):
    port = free_port_block(4 * replicas)
    spaces = []
    models = {}
    for index, family in enumerate(FAMILIES):
        urls = []
        for replica in range(replicas):
            space = launch(family, port + index * replicas + replica, Behaviour(delay), workshop)
            spaces.append(space)
            urls.append(space.url)
        models[f"bench-{replicas}-{family}"] = GradioSpacePool(
            kind="gradio", family=family, spaces=urls, max_concurrent_calls=replicas
        )
    demo = load_channels(DEFAULT_CHANNELS_FILE).channels[0]
    choice = StageBackends(**{family: f"bench-{replicas}-{family}" for family in FAMILIES})
    channel = demo.model_copy(
        update={"slug": f"bench-{replicas}", "clip_seconds": 64 / 24, "backends": choice}
    )
    try:
        started = time.monotonic()
        # One production for every clip, as a run's step has: its Space pools bound the calls.
        backends = build_backends(choice, models, OfflineSettings())
        with (
            ClipProduction(store, channel, backends) as production,
            ThreadPoolExecutor(max_workers=4 * replicas) as pool,
        ):
            jobs = [
                pool.submit(make_clip, production, ClipId(channel=channel.slug, number=number))
                for number in range(1, clips + 1)
            ]
            for job in jobs:
                job.result()
        return time.monotonic() - started
    finally:
        for space in spaces:
            space.app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips-per-replica", type=int, default=4)
    parser.add_argument("--delay", type=float, default=15.0)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    add_plot_argument(parser)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="webtv-bench-spaces-"))
    s3 = start_embedded_s3(
        work / "s3", free_port_block(max(PORT_OFFSETS.values()) + 1), "media", "bench", "secret"
    )
    store = MediaStore("media", s3.endpoint_url, "us-east-1", "bench", "secret")
    workshop = Workshop()
    try:
        print(
            f"{args.clips_per_replica} clips of 2.667 s per replica, "
            f"{args.delay:g} s delay per Space call"
        )
        baseline = None
        measured: dict[int, float] = {}
        for replicas in args.replicas:
            clips = args.clips_per_replica * replicas
            wall = measure(replicas, clips, args.delay, store, workshop)
            per_minute = clips / wall * 60
            baseline = baseline or per_minute
            measured[replicas] = per_minute
            print(
                f"  {replicas} replica(s) per family, {clips} clips: {wall:6.1f} s, "
                f"{per_minute:5.2f} clips/min, x{per_minute / baseline:.2f}",
                flush=True,
            )
    finally:
        s3.stop()
    if args.plot and measured:
        replicas = list(measured)
        first = measured[replicas[0]]
        save_plot(
            args.plot,
            "Remote path: clips per minute against Space replicas",
            [
                Panel(
                    "clips per minute",
                    "line",
                    replicas,
                    {
                        "measured": list(measured.values()),
                        "linear (from the first)": [first * r / replicas[0] for r in replicas],
                    },
                    xlabel="replicas per model family",
                    ylabel="clips / min",
                ),
            ],
            note=f"{args.clips_per_replica} clips of 2.667 s per replica, {args.delay:g} s delay "
            "per Space call",
        )


if __name__ == "__main__":
    main()
