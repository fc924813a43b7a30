"""How fast the offline channel makes air time, and how much of that time Dagster costs, with
each executor.

Makes N clips of one channel the way the running stack does: runs of --clips-per-run clips,
each a fresh `dagster job execute` process (as the run launcher starts them), at most
--concurrent-runs at once, on a throwaway SeaweedFS and a fresh Dagster instance per setup.
Setups, side by side in one invocation (--executors):

  in_process    one process per run, clips in parallel inside each step (the default);
  multiprocess  a process per step, forked from a forkserver;
  celery        every step a task on a Redis broker, taken by two `webtv worker`s.

Every setup uses the same PostgreSQL instance storage (Celery needs it; the others get it so
the comparison is fair). For each it prints (a) air-seconds produced per wall-second and
(b) the share of wall time outside media work: wall time during which no clip stage (S3
download, model/ffmpeg work, probe, preview, upload) was running anywhere.

Usage: .venv/bin/python benchmarks/clip_throughput.py [--clips 20] [--clips-per-run 5]
           [--executors in_process,multiprocess,celery]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg2
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.media_store import MediaStore
from webtv_dagster.production.planning import run_batches
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster.stack.instance import write_instance_yaml
from webtv_dagster_tests.servers import (
    free_port_block,
    running_postgres,
    running_redis,
    start_embedded_s3,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = [
    "shot_prompt",
    "raw_take",
    "upscaled_take",
    "interpolated_clip",
    "music_track",
    "broadcast_clip",
]
POOLS = ["prompt_writer", "text_to_video", "upscaler", "interpolator", "music"]


def union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, finish in sorted(spans):
        if finish <= end:
            continue
        total += finish - max(start, end)
        end = finish
    return total


@contextlib.contextmanager
def celery_workers(env: dict[str, str], folder: Path, count: int = 2):
    logs = [folder / f"worker{index}.log" for index in range(count)]
    workers = [
        subprocess.Popen(
            [str(BIN / "webtv"), "worker", "--name", f"bench{index}"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for index, log in enumerate(logs)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(b"ready." in log.read_bytes() for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit(f"Celery workers did not start; see {folder}")
            time.sleep(0.2)
        yield
    finally:
        for worker in workers:
            stop_process(worker, timeout=30)


def backfill(env: dict[str, str], clips: list[ClipId], clips_per_run: int, concurrent: int):
    """Runs the clips' runs, at most `concurrent` at once; returns the wall time."""
    pending = run_batches(clips, clips_per_run)
    running: list[subprocess.Popen] = []
    started = time.time()
    while pending or running:
        while pending and len(running) < concurrent:
            batch = pending.pop(0)
            tags = {
                "dagster/asset_partition_range_start": batch[0].key,
                "dagster/asset_partition_range_end": batch[-1].key,
            }
            running.append(
                subprocess.Popen(
                    [
                        str(BIN / "dagster"),
                        "job",
                        "execute",
                        "-m",
                        "webtv_dagster.definitions",
                        "-a",
                        "defs",
                        "-j",
                        "clip_job",
                        "--tags",
                        json.dumps(tags),
                    ],
                    env=env,
                    cwd=env["DAGSTER_HOME"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.05)
        for process in [p for p in running if p.poll() is not None]:
            if process.returncode != 0:
                raise SystemExit(f"a clip run failed (exit {process.returncode})")
            running.remove(process)
    return time.time() - started


def stage_spans(home: Path, clips: list[ClipId]) -> dict[str, list[tuple[float, float]]]:
    spans: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for stage in STAGES:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(stage), asset_partitions=[clip.key for clip in clips]
                ),
                limit=10_000,
            ).records
            for record in records:
                metadata = record.asset_materialization.metadata
                spans[stage].append(
                    (metadata["stage_started_at"].value, metadata["stage_finished_at"].value)
                )
    return spans


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clips-per-run", type=int, default=5)
    parser.add_argument("--concurrent-runs", type=int, default=2)
    parser.add_argument("--executors", default="in_process,multiprocess,celery")
    parser.add_argument("--channel", default="llama-jobs")
    add_plot_argument(parser)
    args = parser.parse_args()

    channels_file = Path(
        os.environ.get("WEBTV_CHANNELS_FILE", ROOT / "webtv_dagster/channels.yaml")
    )
    channel = next(c for c in load_channels(channels_file).channels if c.slug == args.channel)
    work = Path(tempfile.mkdtemp(prefix="webtv-bench-"))
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
    port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    air = args.clips * channel.clip_seconds
    print(
        f"clips: {args.clips} x {channel.clip_seconds:.3f} s = {air:.1f} air-seconds "
        f"({args.clips_per_run} clips per run, {args.concurrent_runs} runs at once, "
        f"{os.cpu_count()} cores)\n"
    )
    print(f"{'executor':14s} {'wall s':>8s} {'(a) air-s/wall-s':>17s} {'(b) outside media':>18s}")
    results = {}
    with contextlib.ExitStack() as servers:
        s3 = start_embedded_s3(work / "s3", port, "media", *keys.values())
        servers.callback(s3.stop)
        postgres = servers.enter_context(running_postgres())
        broker = servers.enter_context(running_redis())
        for index, executor in enumerate(args.executors.split(",")):
            # A fresh database per setup, so that no setup sees another's runs or clips.
            home = work / executor
            database = f"bench_{index}"
            connection = psycopg2.connect(
                host="127.0.0.1", port=postgres["DAGSTER_PG_PORT"], user="dagster", dbname="dagster"
            )
            connection.autocommit = True
            connection.cursor().execute(f"CREATE DATABASE {database}")
            connection.close()
            env = {
                **os.environ,
                **keys,
                **postgres,
                "DAGSTER_PG_DB": database,
                "DAGSTER_HOME": str(home),
                "WEBTV_DATA_DIR": str(home / "data"),
                "WEBTV_S3_ENDPOINT_URL": s3.endpoint_url,
                "WEBTV_S3_BUCKET": f"bench-{index}",
                "WEBTV_CHANNELS_FILE": str(channels_file),
                "WEBTV_EXECUTOR": executor,
                "WEBTV_CLIPS_PER_RUN": str(args.clips_per_run),
                "WEBTV_CELERY_BROKER": broker,
            }
            os.environ.update({**postgres, "DAGSTER_PG_DB": database})  # for this process
            write_instance_yaml(home, postgres=True)
            clips = [ClipId(channel=channel.slug, number=n) for n in range(1, args.clips + 1)]
            with dg.DagsterInstance.from_config(str(home)) as instance:
                instance.add_dynamic_partitions("clips", [clip.key for clip in clips])
                for pool in POOLS:  # created up front: runs starting together race on them
                    instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
            store = MediaStore(
                bucket=f"bench-{index}",
                endpoint_url=s3.endpoint_url,
                region="us-east-1",
                access_key_id=keys["AWS_ACCESS_KEY_ID"],
                secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            )
            store.ensure_bucket()
            with celery_workers(env, home) if executor == "celery" else contextlib.nullcontext():
                wall = backfill(env, clips, args.clips_per_run, args.concurrent_runs)
            spans = stage_spans(home, clips)
            every = [span for stage in spans.values() for span in stage]
            assert len(every) == len(STAGES) * len(clips), "some stages left no materialization"
            media = union_seconds(every)
            results[executor] = (wall, air / wall, 1 - media / wall)
            print(
                f"{executor:14s} {wall:8.1f} {air / wall:17.2f} {1 - media / wall:18.1%}",
                flush=True,
            )
    baseline = results.get("in_process")
    if baseline:
        print(
            "\nwall time vs in_process: "
            + ", ".join(
                f"{name} x{values[0] / baseline[0]:.2f}" for name, values in results.items()
            )
        )
    if args.plot and results:
        labels = list(results)
        save_plot(
            args.plot,
            "Clip throughput by executor",
            [
                Panel(
                    "(a) air-seconds per wall-second",
                    "bar",
                    labels,
                    {"air-s / wall-s": [values[1] for values in results.values()]},
                    ylabel="air-s / wall-s",
                    target=1.0,
                    target_label="as fast as air",
                    value_format="{:.2f}",
                ),
                Panel(
                    "(b) wall time outside media work",
                    "bar",
                    labels,
                    {"share": [values[2] * 100 for values in results.values()]},
                    ylabel="% of wall time",
                    value_format="{:.1f}",
                ),
                Panel(
                    "wall time",
                    "bar",
                    labels,
                    {"s": [values[0] for values in results.values()]},
                    ylabel="s",
                    value_format="{:.0f}",
                ),
            ],
            note=f"{args.clips} clips x {channel.clip_seconds:g} s, {args.clips_per_run} clips a "
            f"run, {args.concurrent_runs} runs at once, PostgreSQL instance",
        )


if __name__ == "__main__":
    main()
