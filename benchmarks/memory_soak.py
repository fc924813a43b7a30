"""Memory over hours: several channels of short clips on air under `webtv up`, the resident
memory of every long-running process sampled each minute, and the growth per hour after a
warm-up printed per process (and plotted), with a channel's footprint (its playout and its
publisher): resident (RSS) and proportional (PSS: each shared page divided among the processes
that map it, the memory one more channel costs; Debian's FFmpeg maps 40 MB of libraries that
its publishers share, the slim publisher of scripts/build-publisher-ffmpeg none). Publishers
are killed now and then, so that restarts happen as over days.

The footprint of an earlier commit, side by side: from a checkout of that commit (`git worktree
add /tmp/before <commit>`), in its folder and with PYTHONPATH set to it (the stack's programs
run `python -m`, which looks in the working folder first), run this script:
`cd /tmp/before && PYTHONPATH=$PWD <project>/.venv/bin/python <project>/benchmarks/memory_soak.py`.

Liquidsoap's users' most reported pain is memory that grows for days until the OOM killer
restarts the stream: the target is that no process grows more than 1 MB an hour.

Usage: .venv/bin/python benchmarks/memory_soak.py [--minutes 120] [--channels 3]
           [--warm-up 20] [--kill-publisher-every 10] [--env NAME=VALUE] [--plot PATH.png]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.channels import DEFAULT_CHANNELS_FILE
from webtv_dagster.stack.supervisord import StackSupervisor
from webtv_dagster_tests.servers import start_webtv_up, stop_webtv_up

ACCESS_KEY, SECRET_KEY = "memory", "memory-soak-secret"


def channels_file(folder: Path, channels: int) -> Path:
    """The demo channel `channels` times, with short clips (many clips and boundaries an hour)."""
    document = yaml.safe_load(DEFAULT_CHANNELS_FILE.read_text())
    template = document["channels"][0]
    document["channels"] = [
        {
            **template,
            "slug": f"memory-{n}",
            "title": f"Memory {n}",
            "clip_seconds": 2.6666667,
            "ahead_seconds": 30,
            "seed": n,
            # As a channel runs for months: aired clips pruned beyond a small size (the
            # hourly retention_schedule), so the bucket, and S3's memory, stop growing.
            "retention": {"keep_gb": 0.05, "protect_recent": 10, "keep_intermediates_hours": 0},
        }
        for n in range(channels)
    ]
    for channel in document["channels"]:
        channel.pop("requests", None)
    path = folder / "channels.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def memory_mb(pid: int) -> tuple[float, float, float] | None:
    """The process's resident and proportional set sizes, and its resident anonymous memory
    (its heaps and stacks: what a leak grows, where the rest of RSS is pages of files it maps,
    its libraries' code, which grows as new code paths are first run and then stops), in MB."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        sizes = dict(
            line.split()[:2]
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        )
        return tuple(int(sizes[field]) / 1024 for field in ("Rss:", "Pss:", "Anonymous:"))
    return None


def publishers(playout: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(playout), "-f", "ffmpeg .*-re "], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def sample(supervisor: StackSupervisor) -> dict[str, tuple[float, float, float]]:
    """The resident, proportional and anonymous MB of each long-running process, by name: each
    supervisord program, and each playout's publisher."""
    sizes: dict[str, tuple[float, float, float]] = {}
    for info in supervisor.processes():
        if info["statename"] != "RUNNING":
            continue
        name = info["name"]
        if (size := memory_mb(info["pid"])) is not None:
            sizes[name] = size
        if name.startswith("playout_"):
            for publisher in publishers(info["pid"]):
                if (size := memory_mb(publisher)) is not None:
                    sizes[name.replace("playout_", "publisher_")] = size
    return sizes


def growth_per_hour(minutes: list[float], sizes: list[float]) -> float:
    """The least-squares slope of size over time, in MB an hour."""
    count = len(minutes)
    mean_t, mean_s = sum(minutes) / count, sum(sizes) / count
    spread = sum((t - mean_t) ** 2 for t in minutes) or 1.0
    slope = sum((t - mean_t) * (s - mean_s) for t, s in zip(minutes, sizes, strict=True)) / spread
    return slope * 60


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=120, help="how long on air")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--warm-up", type=float, default=20, help="minutes left out of fits")
    parser.add_argument(
        "--kill-publisher-every", type=float, default=10, help="minutes between publisher kills"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="in the stack's environment (repeatable): run two soaks side by side, one with it",
    )
    add_plot_argument(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="webtv-memory-"))
    extra = dict(pair.split("=", 1) for pair in args.env)
    stack = start_webtv_up(
        folder, channels_file(folder, args.channels), ACCESS_KEY, SECRET_KEY, **extra
    )
    print(f"memory soak in {folder}, with {extra or 'nothing more'} in the stack's environment")
    samples: list[tuple[float, dict[str, tuple[float, float, float]]]] = []
    started = time.monotonic()
    next_kill = args.kill_publisher_every
    try:
        supervisor = None
        while supervisor is None:
            time.sleep(1)
            supervisor = StackSupervisor.connect(stack.data_dir)
        while (minute := (time.monotonic() - started) / 60) < args.minutes:
            samples.append((minute, sample(supervisor)))
            if minute >= next_kill:  # a publisher dies: its playout starts another
                next_kill += args.kill_publisher_every
                for name in samples[-1][1]:
                    if name.startswith("playout_"):
                        info = supervisor.process(name) or {}
                        for publisher in publishers(info.get("pid", 0)):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(publisher, signal.SIGKILL)
            resident = {name: round(sizes[0], 1) for name, sizes in samples[-1][1].items()}
            print(f"{minute:6.1f} min: {resident}", flush=True)
            time.sleep(60)
    finally:
        left = stop_webtv_up(stack)
    names = sorted({name for _, sizes in samples for name in sizes})
    rows = []
    for name in names:
        kept = [(t, sizes[name]) for t, sizes in samples if name in sizes and t >= args.warm_up]
        if len(kept) < 2:
            continue
        minutes = [t for t, _ in kept]
        resident, proportional = [s[0] for _, s in kept], [s[1] for _, s in kept]
        anonymous = [s[2] for _, s in kept]
        rows.append(
            (
                name,
                sum(resident) / len(resident),
                sum(proportional) / len(proportional),
                max(resident),
                growth_per_hour(minutes, anonymous),
                growth_per_hour(minutes, resident),
            )
        )
    print(f"\n{args.channels} channels, {args.minutes:g} min, warm-up {args.warm_up:g} min")
    print(
        "| process | mean RSS MB | mean PSS MB | peak RSS MB | anonymous growth MB/h "
        "| RSS growth MB/h |"
    )
    print("|---|---|---|---|---|---|")
    for name, rss, pss, peak, anonymous_growth, growth in rows:
        print(
            f"| {name} | {rss:.1f} | {pss:.1f} | {peak:.1f} | {anonymous_growth:+.2f} "
            f"| {growth:+.2f} |"
        )

    def mean_of(prefix: str, column: int) -> float:
        values = [row[column] for row in rows if row[0].startswith(prefix)]
        return sum(values) / len(values) if values else float("nan")

    for column, kind in ((1, "resident (RSS)"), (2, "proportional (PSS)")):
        playout, publisher = mean_of("playout_", column), mean_of("publisher_", column)
        print(
            f"a channel, {kind}: {playout + publisher:.1f} MB "
            f"(playout {playout:.1f}, publisher {publisher:.1f})"
        )
    print(f"processes left after webtv down: {left}")
    if args.plot:
        save_plot(
            args.plot,
            "Memory soak: resident memory of every process over time",
            [
                Panel(
                    "resident MB",
                    "line",
                    [round(t, 1) for t, _ in samples],
                    {
                        name: [sizes.get(name, (0.0, 0.0, 0.0))[0] for _, sizes in samples]
                        for name in names
                    },
                    xlabel="minutes",
                    ylabel="MB",
                ),
                Panel(
                    "growth after warm-up",
                    "barh",
                    [row[0] for row in rows],
                    {"MB/h": [row[-1] for row in rows]},
                    xlabel="MB per hour",
                    target=1.0,
                    target_label="target: 1 MB/h",
                    value_format="{:+.2f}",
                ),
            ],
            note=f"{args.channels} channels of 2.67 s clips, a publisher killed every "
            f"{args.kill_publisher_every:g} min",
        )


if __name__ == "__main__":
    main()
