"""Air time made per wall-clock second by the whole running stack, offline backends and QC on.

Runs `webtv up` (SeaweedFS, nginx-rtmp, Dagster code server, webserver and daemon, and the
playout airing the channel) on free ports in a fresh folder, with the demo channel as shipped
(120 s ahead). Once the first clip has aired (warm-up), it counts the broadcast clips that pass
QC during --minutes: air-seconds made per wall-second, with everything an operator runs sharing
the machine. Production slower than air never fills the buffer, so it never waits; faster, it
waits for air, and the figure reads about 1.0.

Usage: .venv/bin/python benchmarks/live_throughput.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import yaml
from running_stack import start_webtv_up

from webtv_dagster import clips
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, load_channels
from webtv_dagster.playout.state import read_state
from webtv_dagster.storage import MediaStore


def broadcast_records(store: MediaStore, slug: str) -> list[float]:
    """When each of the channel's broadcast records was written (a clip that passed QC)."""
    return sorted(
        listed.modified_at
        for listed in store.list_objects(f"channels/{slug}/clips/")
        if listed.key.endswith("/" + clips.BROADCAST_RECORD)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="webtv-live-"))
    document = yaml.safe_load(DEFAULT_CHANNELS_FILE.read_text())
    document["channels"] = document["channels"][:1]
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
        time.sleep(args.minutes * 60)
        ended = time.time()
        made = [t for t in broadcast_records(stack.store, channel.slug) if started <= t < ended]
    finally:
        stack.process.send_signal(signal.SIGTERM)
        stack.process.wait(timeout=180)
    wall = ended - started
    air = len(made) * channel.clip_seconds
    print(f"{len(made)} clips of {channel.clip_seconds:g} s passed QC in {wall:.0f} s: "
          f"{air / wall:.2f} air-s per wall-s (live: playout, daemon, webserver running; "
          f"{os.cpu_count()} cores)")  # fmt: skip


if __name__ == "__main__":
    main()
