"""Gradio Spaces that serve real models (spaces/generators.py): `webtv spaces --model`.

Each answers with the API our pools already call (the look-alikes' in spaces/apps.py, with
more inputs after theirs for the presets in model_endpoints.SPACE_PRESETS), plus a JSON output
with the call's device, dtype, steps and seconds. One generation runs at a time per app (one
GPU), at most `queue_size` wait, and a call past that is refused at once ("queue is full"),
which a pool takes as this replica's refusal and moves on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.frames import decode_rgb_frames, encode_rgb_frames
from webtv_dagster.spaces.apps import LocalSpace, Workshop, serve
from webtv_dagster.spaces.generators import (
    LtxLatentUpscaler,
    LtxVideoGenerator,
    MusicGenComposer,
)

# The most an app accepts per call, whatever it is asked: a hostile caller cannot ask a GPU for
# an hour of work.
MAX_FRAMES = 257  # LTX-Video's longest take
MAX_SIDE = 1280
MAX_STEPS = 100
MAX_MUSIC_SECONDS = 30


def _bounded(value: float, low: int, high: int, what: str) -> int:
    number = int(value)
    if not low <= number <= high:
        raise gr.Error(f"{what} must be between {low} and {high}, not {number}")
    return number


def ltx_video_app(generator: LtxVideoGenerator, workshop: Workshop) -> gr.Blocks:
    def run(
        prompt: str,
        seed: float,
        nb_frames: float,
        nb_steps: float,
        fps: float,
        width: float,
        height: float,
        guidance_scale: float,
        negative_prompt: str,
        image: str | None = None,
    ) -> tuple[str, dict]:
        frames, generation = generator.render(
            prompt,
            _bounded(seed, 0, 2**31 - 1, "seed"),
            _bounded(nb_frames, 2, MAX_FRAMES, "nb_frames"),
            _bounded(nb_steps, 1, MAX_STEPS, "nb_steps"),
            _bounded(width, 32, MAX_SIDE, "width"),
            _bounded(height, 32, MAX_SIDE, "height"),
            float(guidance_scale),
            negative_prompt,
            Path(image) if image else None,
        )
        output = workshop.new_file("take.mp4")
        encode_rgb_frames(frames, _bounded(fps, 1, 60, "fps"), output, "encoding the take")
        return str(output), generation.metadata()

    return gr.Interface(
        run,
        [
            gr.Textbox(label="prompt"),
            gr.Number(label="seed", precision=0),
            gr.Number(label="nb_frames", value=121, precision=0),
            gr.Number(label="nb_steps", value=8, precision=0),
            gr.Number(label="fps", value=24, precision=0),
            gr.Number(label="width", value=512, precision=0),
            gr.Number(label="height", value=288, precision=0),
            gr.Number(label="guidance_scale", value=1.0),
            gr.Textbox(label="negative_prompt", value=""),
            gr.Image(label="first frame (optional)", type="filepath"),
        ],
        [gr.Video(label="take"), gr.JSON(label="generation")],
        api_name="run",
        title="LTX-Video",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


def ltx_upscaler_app(upscaler: LtxLatentUpscaler, workshop: Workshop) -> gr.Blocks:
    def predict(prompt: str, video: str) -> tuple[str, dict]:
        take = probe(Path(video)).video
        if take is None or not take.frames or take.frames > MAX_FRAMES:
            raise gr.Error(f"the video must have between 1 and {MAX_FRAMES} frames")
        if max(take.width, take.height) > MAX_SIDE // 2:
            raise gr.Error(f"the video must be at most {MAX_SIDE // 2} pixels on a side")
        frames = decode_rgb_frames(Path(video), take.width, take.height)
        upscaled, generation = upscaler.upscale(frames, seed=0)
        output = workshop.new_file("upscaled.mp4")
        encode_rgb_frames(upscaled, round(take.fps or 24), output, "encoding the upscaled take")
        return str(output), generation.metadata()

    return gr.Interface(
        predict,
        [gr.Textbox(label="prompt"), gr.Video(label="video")],
        [gr.Video(label="upscaled"), gr.JSON(label="generation")],
        api_name="predict",
        title="LTX-Video latent upsampler",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


def musicgen_app(composer: MusicGenComposer, workshop: Workshop) -> gr.Blocks:
    def predict(text: str, duration: float, seed: float) -> tuple[str, dict]:
        seconds = _bounded(duration, 1, MAX_MUSIC_SECONDS, "duration")
        samples, generation = composer.compose(text, seconds, _bounded(seed, 0, 2**31 - 1, "seed"))
        output = workshop.new_file("music.flac")
        channels = samples.shape[1]
        run_ffmpeg(
            ["-f", "f32le", "-ar", str(composer.sample_rate), "-ac", str(channels)]
            + ["-i", "pipe:0", "-c:a", "flac", str(output)],
            "encoding the music as FLAC",
            stdin=samples.tobytes(),
        )
        return str(output), generation.metadata()

    return gr.Interface(
        predict,
        [
            gr.Textbox(label="text"),
            gr.Number(label="duration", value=8),
            gr.Number(label="seed", value=0, precision=0),
        ],
        [gr.Audio(label="music", type="filepath"), gr.JSON(label="generation")],
        api_name="predict",
        title="MusicGen",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


@dataclass(frozen=True)
class ModelApp:
    family: str  # the family of the pools that call it
    folders: int  # how many weights folders it loads
    build: Callable[[tuple[Path, ...], Workshop], gr.Blocks]


MODEL_APPS = {
    "ltx-video": ModelApp(
        "text_to_video", 1, lambda folders, shop: ltx_video_app(LtxVideoGenerator(*folders), shop)
    ),
    "ltx-upscaler": ModelApp(
        "upscaler", 2, lambda folders, shop: ltx_upscaler_app(LtxLatentUpscaler(*folders), shop)
    ),
    "musicgen": ModelApp(
        "music", 1, lambda folders, shop: musicgen_app(MusicGenComposer(*folders), shop)
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """What `webtv spaces --model NAME=FOLDER[,FOLDER]` serves: an app and its folders."""

    name: str  # a key of MODEL_APPS
    folders: tuple[Path, ...]

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        name, _, folders = text.partition("=")
        if name not in MODEL_APPS or not folders:
            known = ", ".join(MODEL_APPS)
            raise ValueError(f"--model takes NAME=FOLDER with NAME one of {known}, not {text!r}")
        paths = tuple(Path(folder).expanduser().resolve() for folder in folders.split(","))
        needed = MODEL_APPS[name].folders
        if len(paths) != needed:
            raise ValueError(f"--model {name} takes {needed} folder(s), comma-separated")
        return cls(name, paths)


def launch_model_space(
    spec: ModelSpec, port: int, queue_size: int, workshop: Workshop, host: str = "127.0.0.1"
) -> LocalSpace:
    """Loads `spec`'s model and serves it on `host`:`port` in the background."""
    app = MODEL_APPS[spec.name]
    return serve(app.build(spec.folders, workshop), app.family, port, queue_size, host)
