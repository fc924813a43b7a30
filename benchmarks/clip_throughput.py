"""How fast the offline channel makes air time, and how much of that time Dagster costs.

Makes N clips of one channel the way the running stack does: runs of WEBTV_CLIPS_PER_RUN
clips, each a fresh `dagster job execute` process (as the run launcher starts them), at most
--concurrent-runs at once, on a throwaway SeaweedFS and Dagster instance. Prints:

  (a) air-seconds produced per wall-second;
  (b) the share of wall time outside media work: wall time during which no clip stage
      (S3 download, model/ffmpeg work, probe, preview, upload) was running anywhere.

Usage: .venv/bin/python benchmarks/clip_throughput.py [--clips 10] [--clips-per-run 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.embedded_s3 import PORT_OFFSETS, start_embedded_s3
from webtv_dagster.planning import run_batches
from webtv_dagster.processes import free_port_block

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["shot_prompt", "raw_take", "upscaled_take", "interpolated_clip", "music_track",
          "broadcast_clip"]  # fmt: skip


def union_seconds(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, finish in sorted(spans):
        if finish <= end:
            continue
        total += finish - max(start, end)
        end = finish
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--clips-per-run", type=int, default=5)
    parser.add_argument("--concurrent-runs", type=int, default=2)
    parser.add_argument("--channel", default="llama-jobs")
    args = parser.parse_args()

    channels_file = Path(
        os.environ.get("WEBTV_CHANNELS_FILE", ROOT / "webtv_dagster/channels.yaml")
    )
    channel = next(c for c in load_channels(channels_file).channels if c.slug == args.channel)
    work = Path(tempfile.mkdtemp(prefix="webtv-bench-"))
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
    port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    s3 = start_embedded_s3(work / "s3", port, "media", *keys.values())
    home = work / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ, **keys, "DAGSTER_HOME": str(home), "WEBTV_S3_ENDPOINT_URL": s3.endpoint_url,
        "WEBTV_CHANNELS_FILE": str(channels_file), "WEBTV_CLIPS_PER_RUN": str(args.clips_per_run),
    }  # fmt: skip
    clips = [ClipId(channel=channel.slug, number=n) for n in range(1, args.clips + 1)]
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("clips", [clip.key for clip in clips])
        dagster = str(Path(sys.executable).with_name("dagster"))
        pending = run_batches(clips, args.clips_per_run)
        running: list[subprocess.Popen] = []
        started = time.time()
        while pending or running:
            while pending and len(running) < args.concurrent_runs:
                batch = pending.pop(0)
                tags = {"dagster/asset_partition_range_start": batch[0].key,
                        "dagster/asset_partition_range_end": batch[-1].key}  # fmt: skip
                running.append(subprocess.Popen(
                    [dagster, "job", "execute", "-m", "webtv_dagster.definitions",
                     "-j", "clip_job", "--tags", json.dumps(tags)],
                    env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))  # fmt: skip
            time.sleep(0.05)
            for process in [p for p in running if p.poll() is not None]:
                if process.returncode != 0:
                    raise SystemExit(f"a clip run failed (exit {process.returncode})")
                running.remove(process)
        wall = time.time() - started

        spans = []
        stage_seconds: dict[str, list[float]] = {stage: [] for stage in STAGES}
        with dg.DagsterInstance.get() as instance:
            for stage in STAGES:
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(stage)), limit=10_000
                ).records
                for record in records:
                    metadata = record.asset_materialization.metadata
                    span = (metadata["stage_started_at"].value, metadata["stage_finished_at"].value)
                    spans.append(span)
                    stage_seconds[stage].append(span[1] - span[0])
        assert len(spans) == len(STAGES) * len(clips), "some stages left no materialization"
        media = union_seconds(spans)
        air = len(clips) * channel.clip_seconds
        print(f"clips: {len(clips)} x {channel.clip_seconds:.3f} s = {air:.1f} air-seconds "
              f"({args.clips_per_run} clips per run, {args.concurrent_runs} runs at once, "
              f"{os.cpu_count()} cores)")  # fmt: skip
        print(f"wall time: {wall:.1f} s")
        print(f"(a) air-seconds per wall-second: {air / wall:.2f}")
        print(f"(b) share of wall time outside media work: {1 - media / wall:.1%} "
              f"({wall - media:.1f} s)")  # fmt: skip
        print("mean wall seconds per clip and stage (stages of concurrent clips overlap):")
        for stage, seconds in stage_seconds.items():
            print(f"  {stage:18s} {sum(seconds) / len(seconds):6.2f}")
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
