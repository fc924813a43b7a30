"""Our stream-copy playout against the seed article's re-encoding command, side by side.

Both air the same broadcast clips to a local nginx-rtmp for the same air time while an FFmpeg
subscriber records each stream. Prints CPU seconds per aired minute and their ratio, and over
every clip boundary the largest video DTS step, the steps longer than one frame (+2 ms), audio
DTS regressions, and how many publisher processes aired it (a restart would be a reconnect).

Usage: .venv/bin/python benchmarks/playout_cpu.py [--clips 21]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.backends.interpolator import InterpolationRequest, OpticalFlowInterpolator
from webtv_dagster.backends.music import MusicRequest, ProceduralMusicGenerator
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TakeRequest
from webtv_dagster.backends.upscaler import LanczosUpscaler, UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.playout.publisher import Publisher, remux_segment
from webtv_dagster_tests.servers import free_port_block, start_rtmp_server

FRAMES = 192  # the demo channel's 8 s clips
CLIP_SECONDS = FRAMES / 24
PROMPTS = [
    "the llama baking bread, the camera pans slowly from left to right, warm golden hour sunlight",
    "the llama repairing a bicycle, slow zoom in on the subject, cool blue moonlight",
    "the llama painting a mural, tracking shot following the subject from right to left, "
    "soft overcast daylight",
]


def make_clips(folder: Path) -> list[Path]:
    """Real broadcast clips from the offline chain: what the channel actually airs."""
    clips = []
    for index, prompt in enumerate(PROMPTS):
        take, upscaled, smooth = (folder / f"{name}{index}.mp4" for name in ("t", "u", "i"))
        music, clip = folder / f"m{index}.flac", folder / f"clip{index}.mp4"
        ProceduralTextToVideo().render(TakeRequest(prompt=prompt, seed=index), take)
        LanczosUpscaler().upscale(take, UpscaleRequest(prompt=prompt), upscaled)
        OpticalFlowInterpolator().interpolate(upscaled, InterpolationRequest(frames=FRAMES), smooth)
        ProceduralMusicGenerator().compose(
            MusicRequest(prompt=prompt, mood="playful", seed=index, seconds=CLIP_SECONDS), music
        )
        normalize_clip(smooth, music, FRAMES, clip, BROADCAST_PROFILE)
        clips.append(clip)
    return clips


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def record(url: str, seconds: float, output: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            url,
            "-c",
            "copy",
            "-t",
            f"{seconds:.2f}",
            str(output),
        ],
    )


def boundaries(recording: Path) -> dict[str, float]:
    def times(selector: str) -> list[float]:
        out = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-select_streams",
                selector,
                "-show_entries",
                "packet=dts_time",
                "-of",
                "json",
                str(recording),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [float(p["dts_time"]) for p in json.loads(out)["packets"] if "dts_time" in p]

    video, audio = times("v:0"), times("a:0")
    steps = [b - a for a, b in zip(video, video[1:], strict=False)]
    return {
        "largest video DTS step (ms)": round(max(steps) * 1000, 1),
        "video steps over one frame + 2 ms": sum(s > 1 / 24 + 0.002 for s in steps),
        "audio DTS regressions": sum(b <= a for a, b in zip(audio, audio[1:], strict=False)),
        "aired seconds recorded": round(video[-1] - video[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=21)
    add_plot_argument(parser)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="webtv-bench-playout-"))
    clips = make_clips(work)
    aired = [clips[i % len(clips)] for i in range(args.clips)]
    seconds = args.clips * CLIP_SECONDS
    port = free_port_block(2)
    server = start_rtmp_server(
        work / "nginx", {"ours": "ours", "seed": "seed"}, port, port + 1, work / "data"
    )
    results = {}
    try:
        # Ours: one stream-copy publisher, clips appended one by one.
        recorder = record(server.publish_url("ours"), seconds - 3, work / "ours.flv")
        time.sleep(0.5)
        before = children_cpu()
        publisher = Publisher(server.publish_url("ours"), work / "ours.log")
        position = 0.0
        for clip in aired:
            segment = remux_segment(clip, clip.stem, "", position, 24)
            publisher.send(segment)
            position = segment.end
        publisher.close()
        ours_cpu = children_cpu() - before
        recorder.wait(timeout=120)
        results["ours"] = {
            "cpu": ours_cpu,
            "publisher processes": 1,
            **boundaries(work / "ours.flv"),
        }

        # The seed article's command on the same clips.
        playlist = work / "playlist.txt"
        playlist.write_text("".join(f"file '{clip}'\n" for clip in aired))
        recorder = record(server.publish_url("seed"), seconds - 3, work / "seed.flv")
        time.sleep(0.5)
        before = children_cpu()
        subprocess.run(
            [
                "ffmpeg",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                str(playlist),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
                "-f",
                "flv",
                server.publish_url("seed"),
            ],
            check=True,
        )
        seed_cpu = children_cpu() - before
        recorder.wait(timeout=120)
        results["seed"] = {
            "cpu": seed_cpu,
            "publisher processes": 1,
            **boundaries(work / "seed.flv"),
        }
    finally:
        server.stop()
    minutes = seconds / 60
    print(f"{args.clips} clips, {args.clips - 1} boundaries, {seconds:.0f} s of air each")
    per_minute = {}
    for name, result in results.items():
        cpu = result.pop("cpu")
        per_minute[name] = cpu / minutes
        print(f"  {name}: {cpu / minutes:.2f} CPU-s per aired minute; {result}")
    print(f"  ours / seed CPU: {ours_cpu / seed_cpu:.3f}")
    if args.plot:
        names = {"ours": "ours (stream copy)", "seed": "seed command (re-encode)"}
        labels = [names[name] for name in results]
        save_plot(
            args.plot,
            "Playout: CPU per aired minute, and the timeline at clip boundaries",
            [
                Panel(
                    "CPU seconds per aired minute",
                    "bar",
                    labels,
                    {"CPU-s": list(per_minute.values())},
                    ylabel="CPU-s / aired min",
                    value_format="{:.2f}",
                ),
                Panel(
                    "largest video DTS step",
                    "bar",
                    labels,
                    {"ms": [r["largest video DTS step (ms)"] for r in results.values()]},
                    ylabel="ms",
                    target=1000 / 24,
                    target_label="one frame (41.7 ms)",
                    value_format="{:.1f}",
                ),
            ],
            note=f"{args.clips} clips of {CLIP_SECONDS:g} s, {args.clips - 1} boundaries, "
            f"ours / seed CPU = {ours_cpu / seed_cpu:.3f}",
        )


if __name__ == "__main__":
    main()
