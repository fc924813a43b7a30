"""The local Spaces: Zeroscope V2 576w, Zeroscope XL, FILM and MusicGen look-alikes.

Each answers like its real counterpart (endpoint name or index and parameter list, see
model_endpoints.DEFAULT_SPACE_CALLS) but computes with the offline backend. A behaviour makes a
replica slow (standing in for GPU time), failing or hanging, for failover tests and benchmarks.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import yaml

from webtv_dagster.backends.interpolator import InterpolationRequest, OpticalFlowInterpolator
from webtv_dagster.backends.music import MusicRequest, ProceduralMusicGenerator
from webtv_dagster.backends.text_to_video import ProceduralTextToVideo, TakeRequest
from webtv_dagster.backends.upscaler import LanczosUpscaler, UpscaleRequest
from webtv_dagster.channels import load_channels
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg

FAMILIES = ("text_to_video", "upscaler", "interpolator", "music")


@dataclass(frozen=True)
class Behaviour:
    delay_seconds: float = 0.0  # added to every call: stands in for inference time on a GPU
    fail: bool = False
    hang_seconds: float = 0.0  # a replica that answers only after this long
    answer: str = ""  # a hostile answer instead of the model's: one of HOSTILE_ANSWERS


# Answers a broken or hostile Space gives, made with FFmpeg (name: its arguments).
HOSTILE_ANSWERS = {
    "two-hour video": [
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=64x64:r=1",
        "-t",
        "7200",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "answer.mp4",
    ],
    "still image": ["-f", "lavfi", "-i", "testsrc2=s=576x320", "-frames:v", "1", "answer.png"],
    "giant picture": [
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=8192x64:r=8",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "answer.mp4",
    ],
    "no video": ["-f", "lavfi", "-i", "sine=f=440", "-t", "3", "answer.m4a"],
    "not media": [],  # 3 MB of (seeded) random bytes named .mp4
}


@dataclass
class Workshop:
    """Scratch space for one process's local Spaces."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="webtv-spaces-")))

    def new_file(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.folder)) / name


def _behave(behaviour: Behaviour) -> None:
    time.sleep(behaviour.hang_seconds)
    if behaviour.fail:
        raise gr.Error("this replica is out of order")
    time.sleep(behaviour.delay_seconds)


def hostile_answer(kind: str, workshop: Workshop) -> str:
    """A file that answers like the model's output but is not what was asked for."""
    args = HOSTILE_ANSWERS[kind]
    if not args:
        output = workshop.new_file("answer.mp4")
        # Seeded: fresh random bytes are now and then taken by ffprobe for a text format (lrc).
        output.write_bytes(random.Random(1).randbytes(3_000_000))
        return str(output)
    output = workshop.new_file(args[-1])
    run_ffmpeg([*args[:-1], str(output)], f"making a {kind} answer")
    return str(output)


def zeroscope(behaviour: Behaviour, workshop: Workshop) -> gr.Blocks:
    def run(prompt: str, seed: float, nb_frames: float, nb_steps: float) -> str:
        _behave(behaviour)
        if behaviour.answer:
            return hostile_answer(behaviour.answer, workshop)
        output = workshop.new_file("take.mp4")
        request = TakeRequest(prompt=prompt, seed=int(seed), frames=int(nb_frames))
        ProceduralTextToVideo().render(request, output)
        return str(output)

    return gr.Interface(
        run,
        [
            gr.Textbox(label="prompt"),
            gr.Number(label="seed", precision=0),
            gr.Number(label="nb_frames", value=24, precision=0),
            gr.Number(label="nb_steps", value=35, precision=0),
        ],
        gr.Video(label="take"),
        api_name="run",
        title="Zeroscope V2 576w (local: procedural)",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


def zeroscope_xl(behaviour: Behaviour, workshop: Workshop) -> gr.Blocks:
    def predict(prompt: str, video: str) -> str:
        _behave(behaviour)
        output = workshop.new_file("xl_result.mp4")
        LanczosUpscaler().upscale(Path(video), UpscaleRequest(prompt=prompt), output)
        return str(output)

    return gr.Interface(
        predict,
        [gr.Textbox(label="prompt"), gr.Video(label="video")],
        gr.Video(label="upscaled"),
        api_name="predict",
        title="Zeroscope XL (local: Lanczos)",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


def film(behaviour: Behaviour, workshop: Workshop) -> gr.Blocks:
    def interpolate(video: str, steps: float, fps: str) -> str:
        _behave(behaviour)
        frames = probe(Path(video)).video.frames or 2
        output = workshop.new_file("film.mp4")
        # FILM inserts 2**steps - 1 frames between each pair and plays them at `fps`.
        request = InterpolationRequest(fps=int(fps), frames=(frames - 1) * 2 ** int(steps) + 1)
        OpticalFlowInterpolator().interpolate(Path(video), request, output)
        return str(output)

    with gr.Blocks(title="FILM (local: optical flow)", analytics_enabled=False) as app:
        video = gr.Video(label="video")
        steps = gr.Slider(1, 4, value=1, step=1, label="interpolation steps")
        fps = gr.Textbox(value="24", label="fps output")
        result = gr.Video(label="interpolated")
        # The real Space's interpolation is its second event: fn_index=1.
        gr.Button("clear").click(lambda: None, None, result, api_name=False)
        gr.Button("interpolate").click(
            interpolate, [video, steps, fps], result, api_name="interpolate"
        )
    return app


def musicgen(behaviour: Behaviour, workshop: Workshop) -> gr.Blocks:
    def predict(text: str, duration: float) -> str:
        _behave(behaviour)
        output = workshop.new_file("music.flac")
        request = MusicRequest(prompt=text, mood=text, seed=0, seconds=float(duration))
        ProceduralMusicGenerator().compose(request, output)
        return str(output)

    return gr.Interface(
        predict,
        [gr.Textbox(label="text"), gr.Number(label="duration", value=8)],
        gr.Audio(label="music", type="filepath"),
        api_name="predict",
        title="MusicGen (local: procedural)",
        analytics_enabled=False,  # no call home: Spaces run offline
    )


APPS = {
    "text_to_video": zeroscope,
    "upscaler": zeroscope_xl,
    "interpolator": film,
    "music": musicgen,
}


@dataclass
class LocalSpace:
    family: str
    url: str
    app: gr.Blocks


def launch(family: str, port: int, behaviour: Behaviour, workshop: Workshop) -> LocalSpace:
    """Serves one replica on 127.0.0.1:`port` in this process, in the background."""
    return serve(APPS[family](behaviour, workshop), family, port)


def serve(
    app: gr.Blocks,
    family: str,
    port: int,
    queue_size: int | None = None,
    host: str = "127.0.0.1",
) -> LocalSpace:
    """Serves `app` on `host`:`port` in the background: one request at a time, like one GPU,
    with at most `queue_size` waiting (None: no bound) and any more refused at once."""
    app.queue(default_concurrency_limit=1, max_size=queue_size)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        show_error=True,
    )
    return LocalSpace(family=family, url=f"http://{host}:{port}", app=app)


def launch_local_spaces(replicas: int, base_port: int, delay: float) -> dict[str, dict]:
    """Serves `replicas` local Spaces per family in this process, on ports from `base_port`;
    returns them as the `models:` entries of a channels file (one pool per family)."""
    behaviour, workshop = Behaviour(delay_seconds=delay), Workshop()
    models: dict[str, dict] = {}
    port = base_port
    for family in FAMILIES:
        urls = [launch(family, port + i, behaviour, workshop).url for i in range(replicas)]
        port += replicas
        models[f"local-{family.replace('_', '-')}"] = {
            "kind": "gradio",
            "family": family,
            "spaces": urls,
            "max_concurrent_calls": replicas,
        }
    return models


def channels_on_local_spaces(channels_file: Path, folder: Path, models: dict[str, dict]) -> Path:
    """A copy of the channels file, written in `folder`, whose channels call the local Spaces
    `models` for every video and music stage (the prompt writer stays as configured: there is
    no local LLM); validated as any channels file."""
    document = yaml.safe_load(channels_file.read_text(encoding="utf-8"))
    document.setdefault("models", {}).update(models)
    for channel in document["channels"]:
        channel.setdefault("backends", {}).update(
            {model["family"]: name for name, model in models.items()}
        )
    routed = (folder / "channels.local-spaces.yaml").resolve()
    routed.parent.mkdir(parents=True, exist_ok=True)
    routed.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    load_channels(routed)
    return routed
