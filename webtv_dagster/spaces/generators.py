"""Real generative models, run where `webtv spaces --model` serves them: LTX-Video for takes and
its latent upsampler (diffusers), MusicGen for scores (transformers), on torch.

Weights come from a local folder only: every load is `local_files_only` (the libraries then
never ask a hub), so nothing is downloaded at run time; a folder without the model is one
`MissingWeights` error that names the model and the command that downloads it on a machine
with internet. Plain Python, testable without Gradio: the apps in
spaces/model_apps.py only wrap these classes.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODELS_EXTRA = "pip install 'webtv-dagster[models]'"

# What each kind of weights folder holds, and where its weights are published.
WEIGHTS = {
    "ltx-video": ("model_index.json", "Lightricks/LTX-Video-0.9.7-distilled"),
    "ltx-upsampler": ("latent_upsampler/config.json", "Lightricks/ltxv-spatial-upscaler-0.9.7"),
    "musicgen": ("config.json", "facebook/musicgen-small"),
}


class ModelsExtraMissing(RuntimeError):
    """torch, diffusers or transformers is not installed."""


class MissingWeights(FileNotFoundError):
    """A weights folder does not hold the model it should."""


def require_weights(folder: Path, model: str) -> Path:
    """`folder`, once it is known to hold `model`'s weights (a key of WEIGHTS)."""
    marker, repo = WEIGHTS[model]
    if not (folder / marker).is_file():
        raise MissingWeights(
            f"the {model} weights ({repo}) are not in {folder} (no {marker}): on a machine "
            f"with internet run `hf download {repo} --local-dir {folder.name}`, copy that "
            f"folder to {folder} and start again"
        )
    return folder


def models_extra_installed() -> bool:
    from importlib.util import find_spec

    return all(find_spec(name) for name in ("torch", "diffusers", "transformers"))


def _torch():
    if not models_extra_installed():
        raise ModelsExtraMissing(
            f"the real models need torch, diffusers and transformers: {MODELS_EXTRA}"
        )
    import torch

    return torch


@dataclass(frozen=True)
class Generation:
    """What one call cost, reported in the Space's answer beside its file."""

    model: str
    device: str
    dtype: str
    steps: int
    seconds: float
    image_conditioned: bool = False

    def metadata(self) -> dict[str, Any]:
        return asdict(self)


class Generator:
    """One model on one device: loads once, runs one call at a time (the device holds one), and
    gives the device's cached memory back between calls, so that the app's other models fit."""

    model = ""

    def __init__(self, device: str | None = None):
        torch = _torch()
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # bfloat16 is what the models are published in and what a GPU runs fast; a CPU runs
        # float32 faster and more exactly.
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self._one_at_a_time = threading.Lock()

    def _run(self, steps: int, work, image_conditioned: bool = False) -> tuple[Any, Generation]:
        with self._one_at_a_time:
            started = time.monotonic()
            try:
                with self.torch.inference_mode():
                    result = work()
                if self.device.startswith("cuda"):
                    self.torch.cuda.synchronize()
            finally:
                gc.collect()
                if self.device.startswith("cuda"):
                    self.torch.cuda.empty_cache()
            seconds = round(time.monotonic() - started, 3)
        dtype = str(self.dtype).removeprefix("torch.")
        generation = Generation(self.model, self.device, dtype, steps, seconds, image_conditioned)
        return result, generation

    def _generator(self, seed: int):
        return self.torch.Generator(device="cpu").manual_seed(int(seed))


def ltx_frame_count(frames: int) -> int:
    """LTX-Video renders 8k+1 frames (its VAE packs 8 frames after the first into one latent)."""
    return max(9, 8 * -(-(frames - 1) // 8) + 1)


def multiple_of(value: int, unit: int) -> int:
    return max(unit, round(value / unit) * unit)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


class LtxVideoGenerator(Generator):
    """Text-to-video with LTX-Video (diffusers' LTXPipeline), or image-to-video from a first
    frame (LTXImageToVideoPipeline on the same modules: no second copy in memory)."""

    model = "ltx-video"

    def __init__(self, folder: Path, device: str | None = None):
        super().__init__(device)
        from diffusers import LTXImageToVideoPipeline, LTXPipeline

        weights = require_weights(folder, self.model)
        self.pipeline = LTXPipeline.from_pretrained(
            weights, torch_dtype=self.dtype, local_files_only=True
        ).to(self.device)
        self.pipeline.set_progress_bar_config(disable=True)
        self.image_pipeline = LTXImageToVideoPipeline(**self.pipeline.components)
        self.image_pipeline.set_progress_bar_config(disable=True)
        self.spatial_unit = self.pipeline.vae_spatial_compression_ratio

    def render(
        self,
        prompt: str,
        seed: int,
        frames: int,
        steps: int,
        width: int,
        height: int,
        guidance_scale: float = 1.0,
        negative_prompt: str = "",
        image: Path | None = None,
    ) -> tuple[np.ndarray, Generation]:
        """uint8 RGB frames (count, height, width, 3): at least `frames` of them (8k+1), at the
        size rounded to what the VAE packs; with `image`, the take starts from that picture."""
        vae = self.pipeline.vae.config
        # Timestep-aware VAEs (LTX-Video 0.9.1 and later) decode best a little noised.
        decode = {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
        arguments = {
            "prompt": prompt,
            "negative_prompt": negative_prompt or None,
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance_scale),
            "width": multiple_of(int(width), self.spatial_unit),
            "height": multiple_of(int(height), self.spatial_unit),
            "num_frames": ltx_frame_count(int(frames)),
            "generator": self._generator(seed),
            "output_type": "np",
            **(decode if vae.get("timestep_conditioning") else {}),
        }
        pipeline = self.pipeline
        if image is not None:
            from PIL import Image

            with Image.open(image) as opened:
                size = (arguments["width"], arguments["height"])
                arguments["image"] = opened.convert("RGB").resize(size, Image.LANCZOS)
            pipeline = self.image_pipeline
        result, generation = self._run(
            steps, lambda: pipeline(**arguments).frames[0], image_conditioned=image is not None
        )
        return _to_uint8(np.asarray(result)), generation


class LtxLatentUpscaler(Generator):
    """Twice the take's size with LTX-Video's latent upsampler: the take is encoded by the
    video model's VAE, its latents upsampled and decoded again."""

    model = "ltx-upsampler"

    def __init__(self, folder: Path, video_folder: Path, device: str | None = None):
        super().__init__(device)
        from diffusers import AutoencoderKLLTXVideo, LTXLatentUpsamplePipeline
        from diffusers.pipelines.ltx.modeling_latent_upsampler import LTXLatentUpsamplerModel

        upsampler = LTXLatentUpsamplerModel.from_pretrained(
            require_weights(folder, self.model) / "latent_upsampler",
            torch_dtype=self.dtype,
            local_files_only=True,
        )
        vae = AutoencoderKLLTXVideo.from_pretrained(
            require_weights(video_folder, "ltx-video") / "vae",
            torch_dtype=self.dtype,
            local_files_only=True,
        )
        self.pipeline = LTXLatentUpsamplePipeline(vae=vae, latent_upsampler=upsampler)
        self.pipeline.to(self.device)
        self.pipeline.set_progress_bar_config(disable=True)
        self.spatial_unit = self.pipeline.vae_spatial_compression_ratio

    def upscale(self, frames: np.ndarray, seed: int) -> tuple[np.ndarray, Generation]:
        """uint8 RGB frames (count, height, width, 3) at twice the size; `frames` are cut to
        8k+1 and their size rounded to what the VAE packs."""
        from PIL import Image

        count = 8 * ((len(frames) - 1) // 8) + 1
        height = multiple_of(frames.shape[1], self.spatial_unit)
        width = multiple_of(frames.shape[2], self.spatial_unit)
        video = [Image.fromarray(frame) for frame in frames[:count]]
        arguments = {
            "video": video,
            "height": height,
            "width": width,
            "generator": self._generator(seed),
            "output_type": "np",
        }
        result, generation = self._run(1, lambda: self.pipeline(**arguments).frames[0])
        return _to_uint8(np.asarray(result)), generation


class MusicGenComposer(Generator):
    """Music from text with MusicGen (transformers)."""

    model = "musicgen"

    def __init__(self, folder: Path, device: str | None = None):
        super().__init__(device)
        from transformers import AutoTokenizer, MusicgenForConditionalGeneration

        weights = require_weights(folder, self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(weights, local_files_only=True)
        self.music = MusicgenForConditionalGeneration.from_pretrained(
            weights, torch_dtype=self.dtype, local_files_only=True
        ).to(self.device)
        audio = self.music.config.audio_encoder
        self.sample_rate = int(audio.sampling_rate)
        self.tokens_per_second = float(audio.frame_rate)

    def compose(
        self, prompt: str, seconds: float, seed: int, guidance_scale: float = 3.0
    ) -> tuple[np.ndarray, Generation]:
        """float32 samples (count, channels) at `sample_rate`, `seconds` long."""
        tokens = max(1, round(seconds * self.tokens_per_second))
        inputs = self.tokenizer([prompt], return_tensors="pt", padding=True).to(self.device)

        def work():
            self.torch.manual_seed(int(seed))  # generate() samples from torch's global generator
            return self.music.generate(
                **inputs, max_new_tokens=tokens, do_sample=True, guidance_scale=guidance_scale
            )

        audio, generation = self._run(tokens, work)
        samples = audio[0].float().cpu().numpy().T  # (channels, count) -> (count, channels)
        return np.ascontiguousarray(samples, dtype=np.float32), generation
