"""Whether a playout's resident memory creeps with the clips it remuxes: the playout's own
work on each clip (remux_segment: FFmpeg's MPEG-TS output read into one block of megabytes,
its keyframes listed, the block cut into pieces at each keyframe as the feeder sends it
(Segment.pieces), the last three segments kept), done in a fresh thread per clip as the
playout does, as fast as FFmpeg allows, in two processes side by side: glibc's default
allocator, and the mmap threshold the playout fixes
(playout/publisher.keep_clip_buffers_off_the_heap). Each prints its resident memory every
--every clips; the end prints both series and the growth of each after --warm-up clips.

A clip here is 2.7 s, so 1,350 clips are an hour of a channel's clip changes.

Usage: .venv/bin/python benchmarks/segment_churn.py [--clips 1350] [--every 150]
           [--warm-up 150]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from playout_heap import resident_mb

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import run_ffmpeg


def make_busy_clips(folder: Path) -> list[Path]:
    """Three 2.7 s broadcast clips of a busy picture (FFmpeg's testsrc2: megabytes a clip, as
    a generated shot is; a solid colour would be kilobytes and say nothing of the allocator)."""
    clips = []
    for index in range(3):
        video, music = folder / f"v{index}.mp4", folder / f"m{index}.flac"
        picture = ["-f", "lavfi", "-i", f"testsrc2=s=1024x576:r=24,hue=h={index * 90}"]
        run_ffmpeg([*picture, "-frames:v", "64", "-c:v", "libx264", str(video)], "video")
        tone = ["-f", "lavfi", "-i", f"sine=f={440 + 110 * index}:r=48000", "-t", "2.6667"]
        run_ffmpeg([*tone, "-ac", "2", str(music)], "tone")
        clip = folder / f"clip{index}.mp4"
        normalize_clip(video, music, 64, clip, BROADCAST_PROFILE)
        clips.append(clip)
    return clips


def churn(clips: list[Path], count: int, every: int, fixed: bool) -> None:
    """In this process: `count` clips remuxed as the playout does; a line per `every` clips."""
    from webtv_dagster.playout.publisher import keep_clip_buffers_off_the_heap, remux_segment

    if fixed:
        keep_clip_buffers_off_the_heap()
    kept, placed = [], [0.0]

    def one(number: int) -> None:
        segment = remux_segment(clips[number % len(clips)], f"c{number}", "p", placed[0], 24)
        written = sum(len(piece.data) for piece in segment.pieces())  # what the feeder sends
        assert written == len(segment.data)
        kept.append(segment)
        del kept[:-3]
        placed[0] += segment.duration

    for number in range(count + 1):
        if number % every == 0:
            print(number, f"{resident_mb():.2f}", flush=True)
        worker = threading.Thread(target=one, args=(number,))
        worker.start()
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1350)
    parser.add_argument("--every", type=int, default=150)
    parser.add_argument("--warm-up", type=int, default=150)
    parser.add_argument("--side", choices=["default", "fixed"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one side, started by the run below
        clips = sorted(args.folder.glob("clip*.mp4"))
        churn(clips, args.clips, args.every, args.side == "fixed")
        return
    with tempfile.TemporaryDirectory(prefix="webtv-churn-") as scratch:
        folder = Path(scratch)
        sizes = [clip.stat().st_size / 2**20 for clip in make_busy_clips(folder)]
        print(f"clips of {min(sizes):.2f}-{max(sizes):.2f} MB")
        common = [sys.executable, __file__, "--folder", str(folder), "--clips", str(args.clips)]
        common += ["--every", str(args.every)]
        sides = {
            side: subprocess.Popen([*common, "--side", side], stdout=subprocess.PIPE, text=True)
            for side in ("default", "fixed")
        }
        series = {}
        for side, process in sides.items():
            out, _ = process.communicate()
            if process.returncode:
                sys.exit(f"the {side} side failed ({process.returncode})")
            series[side] = [tuple(map(float, line.split())) for line in out.splitlines()]
    print("clips  " + "  ".join(f"{side:>8}" for side in series))
    for row in zip(*series.values(), strict=True):
        print(f"{int(row[0][0]):5d}  " + "  ".join(f"{mb:8.2f}" for _, mb in row))
    for side, points in series.items():
        after = [mb for clips, mb in points if clips >= args.warm_up]
        print(
            f"{side}: {after[0]:.2f} MB after {args.warm_up} clips, {after[-1]:.2f} at the end "
            f"({after[-1] - after[0]:+.2f}), range {min(after):.2f}-{max(after):.2f} MB"
        )


if __name__ == "__main__":
    main()
