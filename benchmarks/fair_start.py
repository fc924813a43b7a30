"""How long many channels wait for their first clip on air when production is short: the real
buffer sensor and Dagster's real run queue, with clip work and the playouts simulated in time.

N channels start empty at once on one machine that makes clips slower than N channels air
them. Each simulated second: every --tick seconds `clip_production_sensor` ticks (its partition
and run requests applied to a real SQLite instance configured by the project's dagster.yaml); the
run queue dequeues by Dagster's own code (`QueuedRunCoordinatorDaemon`: priorities, the
`webtv/stage: clips` limit of 2); a dequeued run takes --run-start seconds plus --clip-work
seconds per clip, then its clips are materialized; a clip airs --playlist-delay seconds after it
is made (playlist sensor, job, playout refresh), each channel's playout airing its clips in
order. The clock is simulated; nothing is rendered.

Prints, for the code on PYTHONPATH, the time until every channel has aired its first clip, and
how many clips any channel had made by then. Compare two versions by running it against each:

    git worktree add /tmp/webtv-before <commit>
    PYTHONPATH=/tmp/webtv-before .venv/bin/python benchmarks/fair_start.py
    .venv/bin/python benchmarks/fair_start.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import types
from collections import defaultdict
from pathlib import Path

import yaml
from plotting import Panel, add_plot_argument, save_plot


def channels_document(count: int, clip_seconds: float, ahead_seconds: float) -> dict:
    return {
        "channels": [
            {
                "slug": f"channel-{n:02d}",
                "title": f"Channel {n}",
                "theme": "llamas at work",
                "style": "watercolour",
                "clip_seconds": clip_seconds,
                "ahead_seconds": ahead_seconds,
                "seed": n,
            }
            for n in range(1, count + 1)
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--clip-seconds", type=float, default=8.0)
    parser.add_argument("--ahead-seconds", type=float, default=120.0)
    parser.add_argument("--clips-per-run", type=int, default=5)
    parser.add_argument("--run-start", type=float, default=5.0, help="seconds before work")
    parser.add_argument(
        "--clip-work",
        type=float,
        default=16.0,
        help="wall seconds per clip in one run while two run at once (2 cores: 1 air-s/wall-s)",
    )
    parser.add_argument("--tick", type=float, default=15.0)
    parser.add_argument("--playlist-delay", type=float, default=15.0)
    parser.add_argument("--limit", type=float, default=4 * 3600, help="simulated seconds")
    add_plot_argument(parser)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="webtv-fair-start-"))
    channels_file = folder / "channels.yaml"
    channels_file.write_text(
        yaml.safe_dump(channels_document(args.channels, args.clip_seconds, args.ahead_seconds))
    )
    os.environ.update(
        WEBTV_CHANNELS_FILE=str(channels_file),
        WEBTV_DATA_DIR=str(folder / "data"),
        WEBTV_CLIPS_PER_RUN=str(args.clips_per_run),
        DAGSTER_HOME=str(folder / "dagster"),
    )
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    from webtv_dagster.clips import ClipId
    from webtv_dagster.definitions import build_definitions
    from webtv_dagster.defs.clip_production import sensor
    from webtv_dagster.lib import names
    from webtv_dagster.lib.resources import Studio
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, write_state
    from webtv_dagster.settings import Settings
    from webtv_dagster.stack.instance import write_instance_yaml

    write_instance_yaml(folder / "dagster", postgres=False)
    clock = types.SimpleNamespace(now=1_800_000_000.0)
    sensor.time = types.SimpleNamespace(time=lambda: clock.now)  # deadlines in simulated time
    settings = Settings.from_env()
    studio = Studio.from_settings(settings)
    clip_job = build_definitions(settings).resolve_job_def("clip_job")
    # Queued runs name where their code lives; nothing launches them here.
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="webtv_dagster.definitions")
            ),
            repository_name="__repository__",
        ),
        job_name="clip_job",
    )
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

    def report(instance, run, event_type) -> None:
        instance.report_dagster_event(
            DagsterEvent(event_type_value=event_type.value, job_name=run.job_name),
            run_id=run.run_id,
        )

    with dg.DagsterInstance.get() as instance:
        cursor, booked = None, set()
        finishing: dict[str, tuple[float, list[str]]] = {}
        airable: dict[str, dict[int, float]] = defaultdict(dict)  # channel: clip -> when
        made: dict[str, int] = defaultdict(int)
        aired: dict[str, int] = defaultdict(int)
        first_air: dict[str, float] = {}
        next_slot: dict[str, float] = {}
        slugs = [f"channel-{n:02d}" for n in range(1, args.channels + 1)]
        for slug in slugs:
            PlayoutFolder.of(folder / "data", slug).path.mkdir(parents=True)
        t = 0.0
        while len(first_air) < args.channels and t < args.limit:
            clock.now = 1_800_000_000.0 + t
            if t % args.tick == 0:
                context = dg.build_sensor_context(
                    instance=instance, cursor=cursor, resources={"studio": studio}
                )
                result = sensor.clip_production_sensor(context)
                cursor = result.cursor
                for request in result.dynamic_partitions_requests or []:
                    keys = list(request.partition_keys)
                    instance.add_dynamic_partitions(request.partitions_def_name, keys)
                for request in result.run_requests:
                    if request.run_key not in booked:
                        booked.add(request.run_key)
                        instance.create_run_for_job(
                            job_def=clip_job,
                            tags=request.tags,
                            remote_job_origin=origin,
                            status=dg.DagsterRunStatus.QUEUED,
                        )
            for run in daemon._get_runs_to_dequeue(
                instance, instance.get_concurrency_config(), fixed_iteration_time=clock.now
            ):
                start = ClipId.parse(run.tags[names.RANGE_START])
                end = ClipId.parse(run.tags[names.RANGE_END])
                keys = [
                    ClipId(channel=start.channel, number=n).key
                    for n in range(start.number, end.number + 1)
                ]
                report(instance, run, DagsterEventType.RUN_START)
                finishing[run.run_id] = (t + args.run_start + len(keys) * args.clip_work, keys)
            for run_id, (done_at, keys) in list(finishing.items()):
                if done_at > t:
                    continue
                del finishing[run_id]
                for key in keys:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset_key="broadcast_clip", partition=key)
                    )
                    clip = ClipId.parse(key)
                    airable[clip.channel][clip.number] = t + args.playlist_delay
                    made[clip.channel] += 1
                report(instance, instance.get_run_by_id(run_id), DagsterEventType.RUN_SUCCESS)
            for slug in slugs:
                ready = airable[slug]
                if t < next_slot.get(slug, 0) or ready.get(aired[slug] + 1, t + 1) > t:
                    continue  # airing a clip, or the next one is not ready: a replay
                aired[slug] += 1
                first_air.setdefault(slug, t)
                next_slot[slug] = t + args.clip_seconds
                write_state(
                    folder / "data",
                    PlayoutState(
                        channel=slug,
                        title=slug,
                        publisher_started_at=0,
                        updated_at=clock.now,
                        aired_through=aired[slug],
                        unplayed_seconds=0,
                        schedule=[],
                        up_next=[],
                    ),
                )
            t += 1
    print(
        f"{args.channels} channels, {args.clip_seconds:g} s clips, {args.ahead_seconds:g} s "
        f"ahead, runs of {args.clips_per_run}: {args.run_start:g} s start + "
        f"{args.clip_work:g} s per clip, 2 clip runs at once (simulated clock)"
    )
    if len(first_air) < args.channels:
        print(f"after {args.limit:.0f} s only {len(first_air)} channels had aired a clip")
        return
    last = max(first_air.values())
    print(
        f"first channel on air after {min(first_air.values()):.0f} s; "
        f"all {args.channels} on air after {last:.0f} s"
    )
    print(
        f"clips made by then: most by one channel {max(made.values())}, "
        f"fewest {min(made[slug] for slug in slugs)}"
    )
    if args.plot:
        order = sorted(slugs, key=lambda slug: first_air[slug])
        labels = [slug.removeprefix("channel-") for slug in order]
        save_plot(
            args.plot,
            f"{args.channels} channels starting at once: first clip on air",
            [
                Panel(
                    "seconds until the channel's first clip airs",
                    "bar",
                    labels,
                    {"s": [first_air[slug] for slug in order]},
                    xlabel="channel",
                    ylabel="simulated s",
                    value_format="",
                ),
                Panel(
                    f"clips made by {last:.0f} s (all on air)",
                    "bar",
                    labels,
                    {"clips": [made[slug] for slug in order]},
                    xlabel="channel",
                    ylabel="clips",
                    value_format="",
                ),
            ],
            note=f"{args.clip_seconds:g} s clips, {args.ahead_seconds:g} s ahead, runs of "
            f"{args.clips_per_run}: {args.run_start:g} s start + {args.clip_work:g} s per "
            "clip, 2 clip runs at once (simulated clock)",
        )


if __name__ == "__main__":
    main()
