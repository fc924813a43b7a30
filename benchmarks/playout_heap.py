"""Whether a playout's Python heap grows: one channel's playout, as `webtv playout` runs it (its
standard-library S3 reader, its FFmpeg publisher), in this process with tracemalloc on, against
a throwaway SeaweedFS and nginx-rtmp, airing a playlist of three 2.7 s clips (a clip change
every 2.7 s, replays once it runs dry). After a warm-up, the traced heap is printed every
--every minutes with the lines whose allocations grew most since the warm-up.

The memory soak (benchmarks/memory_soak.py) measures resident memory, which also counts the
allocator's own growth; this tells the two apart. The resident size printed here includes
tracemalloc's own bookkeeping and is not the playout's.

Usage: .venv/bin/python benchmarks/playout_heap.py [--minutes 20] [--every 5] [--warm-up 2]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import load_channels
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.channel import ChannelPlayout
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster.storage import S3Reader
from webtv_dagster_tests.conftest import CLIP_COLOURS, TEST_CHANNELS, upload_playlist
from webtv_dagster_tests.servers import free_port_block, start_embedded_s3, start_rtmp_server

ACCESS_KEY, SECRET_KEY = "heap", "playout-heap-secret"
# Allocations of the measurement itself: tracemalloc's snapshots and the source lines read to
# print their tracebacks.
OWN_FILES = ("tracemalloc.py", "linecache.py", "playout_heap.py")


def make_clips(folder: Path) -> list[Path]:
    clips = []
    for index, colour in enumerate(CLIP_COLOURS[:3]):
        video, music = folder / f"v{index}.mp4", folder / f"m{index}.flac"
        clip = folder / f"clip{index}.mp4"
        picture = ["-f", "lavfi", "-i", f"color=c={colour}:s=1024x576:r=24", "-frames:v", "64"]
        run_ffmpeg([*picture, "-c:v", "libx264", "-preset", "ultrafast", str(video)], "video")
        tone = ["-f", "lavfi", "-i", f"sine=f={440 + 110 * index}:r=48000", "-t", "2.6667"]
        run_ffmpeg([*tone, "-ac", "2", str(music)], "tone")
        normalize_clip(video, music, 64, clip, BROADCAST_PROFILE)
        clips.append(clip)
    return clips


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def measured(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces(
        [tracemalloc.Filter(False, f"*{name}", all_frames=True) for name in OWN_FILES]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--warm-up", type=float, default=2)
    args = parser.parse_args()
    tracemalloc.start(6)
    work = Path(tempfile.mkdtemp(prefix="webtv-playout-heap-"))
    port = free_port_block(max(PORT_OFFSETS.values()) + 1)
    s3 = start_embedded_s3(work / "s3", port, "media", ACCESS_KEY, SECRET_KEY)
    channel = load_channels(TEST_CHANNELS).channels[0]
    rtmp_port = free_port_block(2)
    rtmp = start_rtmp_server(
        work / "nginx", {channel.slug: channel.title}, rtmp_port, rtmp_port + 1, work / "data"
    )
    keys = {"endpoint_url": s3.endpoint_url, "region": "us-east-1"}
    secrets = {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    clips = make_clips(work)
    upload_playlist(
        MediaStore(bucket="media", **keys, **secrets), channel, dict(enumerate(clips, 1))
    )
    reader = S3Reader("media", keys["endpoint_url"], keys["region"], **secrets)
    playout = ChannelPlayout(
        reader, channel, rtmp.publish_url(channel.slug), work / "data", cache_bytes=50 * 2**20
    )
    thread = threading.Thread(target=playout.run, daemon=True)
    thread.start()
    try:
        time.sleep(args.warm_up * 60)
        gc.collect()
        first = measured(tracemalloc.take_snapshot())
        base = sum(stat.size for stat in first.statistics("filename")) / 1e6
        started = time.monotonic()
        print(
            f"after {args.warm_up:g} min of warm-up: Python heap {base:.2f} MB, "
            f"resident {resident_mb():.0f} MB",
            flush=True,
        )
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.every * 60)
            gc.collect()
            snapshot = measured(tracemalloc.take_snapshot())
            heap = sum(stat.size for stat in snapshot.statistics("filename")) / 1e6
            minutes = (time.monotonic() - started) / 60
            print(
                f"\n{minutes:.0f} min: Python heap {heap:.2f} MB ({heap - base:+.3f} MB, "
                f"{(heap - base) * 60 / minutes:+.2f} MB/h)",
                flush=True,
            )
            for stat in snapshot.compare_to(first, "lineno")[:5]:
                print(
                    f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  "
                    f"{stat.traceback[0]}",
                    flush=True,
                )
    finally:
        playout.stop.set()
        thread.join(timeout=30)
        rtmp.stop()
        s3.stop()


if __name__ == "__main__":
    main()
