"""Air time made per wall-clock second by the whole running stack, offline backends and QC on.

Runs `webtv up` (SeaweedFS, nginx-rtmp, Dagster code server, webserver and daemon, and the
playout airing the channel) on free ports in a fresh folder, with the demo channel as shipped
but for its buffer: `ahead_seconds` is --ahead (default the maximum, 3600 s), so that production
never waits for air inside the window and the figure is what the stack can make, not what air
asks for (with the demo's 120 s, production waits whenever the buffer is full, and the figure
reads at most about 1.0). Once the first clip has aired (warm-up), it counts the broadcast clips
that pass QC during --minutes: air-seconds made per wall-second, with everything an operator runs
sharing the machine, then the CPU each process tree took per clip made.

Usage: .venv/bin/python benchmarks/live_throughput.py [--minutes 10] [--ahead 3600]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import yaml
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster import clips
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, MAX_AHEAD_SECONDS, load_channels
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.state import read_state
from webtv_dagster_tests.servers import start_webtv_up


def broadcast_records(store: MediaStore, slug: str) -> list[float]:
    """When each of the channel's broadcast records was written (a clip that passed QC)."""
    return sorted(
        listed.modified_at
        for listed in store.list_objects(f"channels/{slug}/clips/")
        if listed.key.endswith("/" + clips.BROADCAST_RECORD)
    )


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_program(root: int) -> dict[str, float]:
    """CPU seconds of each process tree under `root` (webtv up), named by the tree's top
    command. A process's own time plus what its reaped children took (cutime, cstime), summed
    over the live processes of the tree: a run worker's FFmpeg counts once, in the run worker or,
    once the run ended, in the code server that launched it."""
    processes: dict[int, tuple[int, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
        processes[int(entry.name)] = (int(fields[1]), seconds, command)
    totals: dict[str, float] = {}
    for pid, (_, seconds, _) in processes.items():
        chain = [pid]
        while chain[-1] in processes and chain[-1] != root:
            chain.append(processes[chain[-1]][0])
        if chain[-1] != root:
            continue
        # The tree's top process below supervisord (or below webtv up itself).
        under_supervisord = len(chain) >= 3 and "supervisord" in processes[chain[-2]][2]
        top = chain[-3] if under_supervisord else chain[max(-2, -len(chain))]
        name = " ".join(Path(word).name for word in processes[top][2].split()[:4])[:70]
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--ahead", type=float, default=MAX_AHEAD_SECONDS)
    add_plot_argument(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="webtv-live-"))
    document = yaml.safe_load(DEFAULT_CHANNELS_FILE.read_text())
    document["channels"] = document["channels"][:1]
    document["channels"][0]["ahead_seconds"] = args.ahead
    channel_file = folder / "channels.yaml"
    channel_file.write_text(yaml.safe_dump(document))
    channel = load_channels(channel_file).channels[0]
    stack = start_webtv_up(folder, channel_file, "live", "live-throughput-secret")
    try:
        print(f"stack in {folder}; warming up until the first clip airs", flush=True)
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            state = read_state(stack.data_dir, channel.slug)
            if state and state.aired_through >= 1:
                break
            time.sleep(2)
        else:
            raise SystemExit(f"no clip aired within 15 minutes: see {folder}/webtv-up.log")
        started = time.time()
        cpu_before = cpu_by_program(stack.process.pid)
        time.sleep(args.minutes * 60)
        ended = time.time()
        cpu_after = cpu_by_program(stack.process.pid)
        made = [t for t in broadcast_records(stack.store, channel.slug) if started <= t < ended]
    finally:
        stack.process.send_signal(signal.SIGTERM)
        stack.process.wait(timeout=180)
    wall = ended - started
    air = len(made) * channel.clip_seconds
    print(
        f"{len(made)} clips of {channel.clip_seconds:g} s passed QC in {wall:.0f} s: "
        f"{air / wall:.2f} air-s per wall-s (live: playout, daemon, webserver running; "
        f"{os.cpu_count()} cores; {args.ahead:g} s ahead)"
    )
    print(f"CPU seconds per clip by process tree over the window ({wall:.0f} s):")
    per_clip = {}
    for name in sorted(cpu_after, key=lambda name: -cpu_after[name]):
        spent = cpu_after[name] - cpu_before.get(name, 0.0)
        if spent > 0.5:
            per_clip[name] = spent / max(1, len(made))
            print(f"  {spent / max(1, len(made)):6.2f}  {name}")
    if args.plot:
        per_clip = dict(sorted(per_clip.items(), key=lambda item: -item[1]))
        save_plot(
            args.plot,
            "Live production against air, the whole stack running",
            [
                Panel(
                    "air-seconds made per wall-second",
                    "bar",
                    ["live stack"],
                    {"air-s / wall-s": [air / wall]},
                    target=1.0,
                    target_label="as fast as air",
                    value_format="{:.2f}",
                ),
                Panel(
                    "CPU seconds per clip, by process tree",
                    "barh",
                    list(per_clip),
                    {"CPU s": list(per_clip.values())},
                    xlabel="CPU s per clip",
                    value_format="{:.2f}",
                ),
            ],
            note=f"{len(made)} clips of {channel.clip_seconds:g} s passed QC in {wall:.0f} s; "
            f"{args.ahead:g} s ahead",
        )


if __name__ == "__main__":
    main()
