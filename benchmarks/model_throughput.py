"""Device time per second of air for each real model, peak memory and clips per hour per GPU.

Each model is built with random weights (speed does not depend on the weights' values, so
nothing is downloaded), saved as a weights folder and loaded by the same classes the Spaces of
`webtv spaces --model` run (spaces/generators.py). Per model: a warm-up call, then --repeats
timed calls making one clip's worth (--seconds of air): the take at the preset's size and rate,
its 2x latent upsampling, the score. A clip costs the three in turn on one device, so clips per
hour per GPU is 3600 s over their sum.

On CUDA the models have their published sizes (LTX-Video 2B, or --ltx 13b; the T5-XXL text
encoder; MusicGen small) in bfloat16; on a CPU they are the tests' tiny models in float32 at
the same video sizes (the figures then time the pipeline's own work: VAE, scheduler, encoding,
not a real transformer), unless --size real.

Usage: .venv/bin/python benchmarks/model_throughput.py [--seconds 8] [--repeats 3]
       [--size tiny|real] [--ltx 2b|13b]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import torch

from webtv_dagster.model_endpoints import SPACE_PRESETS
from webtv_dagster.spaces.generators import (
    LtxLatentUpscaler,
    LtxVideoGenerator,
    MusicGenComposer,
    ltx_frame_count,
)
from webtv_dagster_tests.tiny_models import (
    ltx_upsampler_weights,
    ltx_video_weights,
    musicgen_weights,
)

# LTX-Video 13B as its published config.json sizes it (the 2B is the class's default).
LTX_13B = {
    "num_layers": 48,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
}


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's, in KiB


def timed(call, repeats: int, device: str) -> tuple[float, float]:
    """Median seconds of `call` over `repeats` after a warm-up, and the peak memory (MB)."""
    call()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = [call()[1].seconds for _ in range(repeats)]
    return statistics.median(seconds), peak_memory_mb(device)


def measure_take(ltx_folder, frames, steps, args, device) -> tuple[str, float, float]:
    shape = SPACE_PRESETS["ltx-video"].take
    video = LtxVideoGenerator(ltx_folder)
    prompt = "a llama chef in a busy kitchen"
    seconds, memory = timed(
        lambda: video.render(prompt, 1, frames, steps, shape.width, shape.height),
        args.repeats,
        device,
    )
    return f"LTX-Video {args.ltx if args.size == 'real' else 'tiny'} take", seconds, memory


def measure_upscaler(folder, ltx_folder, frames, steps, args, device, real):
    """The upsampler on a take of the preset's shape (random pixels: the cost is the same)."""
    shape = SPACE_PRESETS["ltx-video"].take
    take = torch.randint(0, 256, (frames, shape.height, shape.width, 3), dtype=torch.uint8)
    upscaler = LtxLatentUpscaler(ltx_upsampler_weights(folder / "up", real_size=real), ltx_folder)
    seconds, memory = timed(lambda: upscaler.upscale(take.numpy(), 0), args.repeats, device)
    return "LTX latent upsampler x2", seconds, memory


def measure_music(folder, args, device, real):
    music = MusicGenComposer(musicgen_weights(folder / "musicgen", real_size=real))
    seconds, memory = timed(
        lambda: music.compose("calm jazz piano", args.seconds, 1), args.repeats, device
    )
    return f"MusicGen {'small' if real else 'tiny'} score", seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of air per clip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=["tiny", "real"], default=None)
    parser.add_argument("--ltx", choices=["2b", "13b"], default="2b")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.size = size = args.size or ("real" if device == "cuda" else "tiny")
    shape = SPACE_PRESETS["ltx-video"].take
    frames = ltx_frame_count(round(args.seconds * shape.fps) + 1)
    steps = SPACE_PRESETS["ltx-video"].call.inputs[3]
    print(
        f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
        f"{size} models, {args.seconds:g} s of air: {frames} frames of "
        f"{shape.width}x{shape.height} at {shape.fps} fps, {steps} steps"
    )

    with tempfile.TemporaryDirectory(prefix="webtv-model-bench-") as scratch:
        folder = Path(scratch)
        real = size == "real"
        ltx_folder = ltx_video_weights(folder / "ltx", real_size=real)
        if real and args.ltx == "13b":
            from diffusers import LTXVideoTransformer3DModel

            LTXVideoTransformer3DModel(**LTX_13B).save_pretrained(ltx_folder / "transformer")
        rows = [
            measure_take(ltx_folder, frames, steps, args, device),
            measure_upscaler(folder, ltx_folder, frames, steps, args, device, real),
            measure_music(folder, args, device, real),
        ]

    total = sum(seconds for _, seconds, _ in rows)
    print()
    print("| model | seconds per clip | device s per s of air | peak memory (MB) |")
    print("|---|---:|---:|---:|")
    for name, seconds, memory in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / args.seconds:.3f} | {memory:,.0f} |")
    print(f"| one clip, all three | {total:.2f} | {total / args.seconds:.3f} | |")
    print(
        f"\nclips per hour per {'GPU' if device == 'cuda' else 'CPU (2 cores here)'}: "
        f"{3600 / total:,.0f} ({3600 / total * args.seconds / 3600:.2f} hours of air per hour; "
        f"a channel needs 1.00)"
    )


if __name__ == "__main__":
    main()
