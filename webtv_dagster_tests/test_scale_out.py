"""Scale-out: the same definitions run their steps on two Celery workers (a real Redis broker),
with media in S3 and the instance in PostgreSQL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from webtv_dagster.defs.clip_production.assets import broadcast_clip, raw_take, shot_prompt
from webtv_dagster.stack.instance import write_instance_yaml
from webtv_dagster_tests.servers import stop_process

from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, wait_for

BIN = Path(sys.executable).parent
KEYS = [f"test-llamas-{n:06d}" for n in range(1, 5)]


def test_a_backfill_runs_on_both_workers(postgres, redis_url, seaweedfs, media_store, tmp_path):
    home = tmp_path / "dagster-home"
    env = {
        **os.environ,
        **postgres,
        "DAGSTER_HOME": str(home),
        "WEBTV_DATA_DIR": str(tmp_path / "data"),
        "WEBTV_EXECUTOR": "celery",
        "WEBTV_CELERY_BROKER": redis_url,
        "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS),
        "WEBTV_CLIPS_PER_RUN": "2",
        "WEBTV_PARALLEL_CLIPS": "1",
        "WEBTV_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "WEBTV_S3_BUCKET": media_store.bucket,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    os.environ.update({name: env[name] for name in postgres})  # for this process's instance
    write_instance_yaml(home, postgres=True)
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2")}
    workers = {
        name: subprocess.Popen(
            [str(BIN / "webtv"), "worker", "--name", name],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name, log in logs.items()
    }
    try:
        for log in logs.values():
            wait_for(lambda log=log: b"ready." in log.read_bytes(), 60, f"{log.name} ready")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("clips", KEYS)
            # Two runs starting at the same instant race to create a pool's default limit
            # (a unique-key error in Dagster 1.13); the daemon would have created them first.
            pools = {"prompt_writer", "text_to_video", "upscaler", "interpolator", "music"}
            for pool in pools - instance.event_log_storage.get_concurrency_keys():
                instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
        # The backfill: two runs of two clips, launched as run workers launch them.
        runs = [
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
                    json.dumps(
                        {
                            "dagster/asset_partition_range_start": first,
                            "dagster/asset_partition_range_end": last,
                        }
                    ),
                ],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for first, last in [(KEYS[0], KEYS[1]), (KEYS[2], KEYS[3])]
        ]
        outputs = [run.communicate(timeout=400)[0].decode(errors="replace") for run in runs]
        for run, output in zip(runs, outputs, strict=True):
            assert run.returncode == 0, output[-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_materialized_partitions(broadcast_clip.key) == set(KEYS)
            made_by = set()
            for asset in (shot_prompt, raw_take, broadcast_clip):
                for key in KEYS:
                    record = instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[key]),
                        limit=1,
                    ).records[0]
                    made_by.add(record.asset_materialization.metadata["worker"].value)
        pids = {str(worker.pid) for worker in workers.values()}
        # Every step ran on a worker, and both workers took steps.
        assert {worker.rsplit(":", 1)[1] for worker in made_by} == pids
    finally:
        for worker in workers.values():
            stop_process(worker, timeout=30)
