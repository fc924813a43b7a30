"""How close the offline interpolator comes to frames it never saw, and what it costs.

Renders procedural takes at 24 fps (the ground truth), keeps every --step-th frame as the take
(8 fps for a step of 3, as Zeroscope's), interpolates the take back to 24 fps and compares the
frames in between with the dropped ones (PSNR of the luma plane), side by side with FFmpeg's
minterpolate (mci, overlapped blocks, bilateral: the previous offline interpolator, run here as
a reference command), blending the two neighbouring take frames, and repeating the earlier one.
All read the same encoded take; CPU seconds include each one's encode.

Usage: .venv/bin/python benchmarks/interpolation_quality.py [--step 3]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.backends.interpolator import InterpolationRequest, OpticalFlowInterpolator
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TakeRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import broadcast_x264
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.frames import decode_rgb_frames, encode_rgb_frames
from webtv_dagster_tests.frames import decode_luma_frames

PROMPTS = [
    "the llama baking bread, the camera pans slowly from left to right, warm golden hour sunlight",
    "a fast car chase through a neon city at night, tracking shot",
    "an underwater coral reef with fish, slow zoom in on the subject",
    "an astronaut cat floating in space, the camera orbits around the subject",
]
TAKE_FRAMES = 17


def cpu_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def psnr(made: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(float(np.mean((made - truth) ** 2)), 1e-9)))


def minterpolate(take: Path, request: InterpolationRequest, output: Path) -> None:
    run_ffmpeg(
        [
            "-i",
            str(take),
            "-vf",
            f"minterpolate=fps={request.fps}:mi_mode=mci:mc_mode=obmc:me_mode=bilat:me=hexbs"
            ":search_param=8:scd=none,tpad=stop_mode=clone:stop_duration=1",
            "-frames:v",
            str(request.frames),
            *broadcast_x264(BROADCAST_PROFILE),
            "-an",
            str(output),
        ],
        "minterpolate",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step", type=int, default=3, help="keep one frame in this many")
    parser.add_argument("--seeds", type=int, default=2)
    add_plot_argument(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="webtv-interpolation-"))
    frames = (TAKE_FRAMES - 1) * args.step + 1
    request = InterpolationRequest(fps=24, frames=TAKE_FRAMES * args.step)
    methods = {
        "opencv-dis-flow (offline interpolator)": OpticalFlowInterpolator(0).interpolate,
        "ffmpeg minterpolate (reference)": minterpolate,
    }
    scores: dict[str, list[float]] = {name: [] for name in [*methods, "blend", "repeat"]}
    costs: dict[str, list[float]] = {name: [] for name in methods}
    for prompt in PROMPTS:
        for seed in range(1, args.seeds + 1):
            truth_file = folder / "truth.mp4"
            ProceduralTextToVideo().render(
                TakeRequest(prompt=prompt, seed=seed, frames=frames, fps=24), truth_file
            )
            video = probe(truth_file).video
            take = folder / "take.mp4"
            rgb = decode_rgb_frames(truth_file, video.width, video.height)
            encode_rgb_frames(rgb[:: args.step], 24 // args.step, take, "take")
            truth, source = decode_luma_frames(truth_file), decode_luma_frames(take)
            between = [n for n in range(frames) if n % args.step]
            for name, interpolate in methods.items():
                started = cpu_seconds()
                interpolate(take, request, folder / "made.mp4")
                costs[name].append(cpu_seconds() - started)
                made = decode_luma_frames(folder / "made.mp4")
                scores[name].append(np.mean([psnr(made[n], truth[n]) for n in between]))
            step = args.step
            blend = [
                ((step - n % step) * source[n // step] + n % step * source[n // step + 1]) / step
                for n in between
            ]
            scores["blend"].append(
                np.mean([psnr(b, truth[n]) for b, n in zip(blend, between, strict=True)])
            )
            scores["repeat"].append(np.mean([psnr(source[n // step], truth[n]) for n in between]))
    print(
        f"{len(PROMPTS) * args.seeds} procedural takes of {TAKE_FRAMES} frames at 576x320, "
        f"one frame kept in {args.step}; PSNR (luma) of the frames in between:"
    )
    for name, values in scores.items():
        cost = f", {np.mean(costs[name]):.2f} CPU s a take" if name in costs else ""
        print(f"  {name:40s} {np.mean(values):6.2f} dB (worst take {min(values):.2f}){cost}")
    if args.plot:
        short = {name: name.split(" (")[0] for name in scores}
        save_plot(
            args.plot,
            "Interpolation: frames it never saw, and what it costs",
            [
                Panel(
                    "PSNR of the frames in between (luma)",
                    "barh",
                    [short[n] for n in scores],
                    {"mean dB": [float(np.mean(v)) for v in scores.values()]},
                    xlabel="dB",
                    value_format="{:.2f}",
                ),
                Panel(
                    "CPU seconds a take (encode included)",
                    "barh",
                    [short[n] for n in costs],
                    {"CPU s": [float(np.mean(v)) for v in costs.values()]},
                    xlabel="CPU s",
                    value_format="{:.2f}",
                ),
            ],
            note=f"{len(PROMPTS) * args.seeds} procedural takes of {TAKE_FRAMES} frames at "
            f"576x320, one frame kept in {args.step}",
        )


if __name__ == "__main__":
    main()
