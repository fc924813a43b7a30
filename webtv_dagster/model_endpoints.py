"""Remote models a channels file can name: OpenAI-compatible LLMs and pools of Gradio Spaces.

In the channels file:

    models:
      writer-llm: {kind: openai, base_url: http://127.0.0.1:8000/v1, model: llama-3.1-8b}
      zeroscope: {kind: gradio, family: text_to_video, spaces: [me/zeroscope-v2, me/zeroscope-v2-b]}
    channels:
      - slug: ...
        backends: {prompt_writer: writer-llm, text_to_video: zeroscope}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Family = Literal["prompt_writer", "text_to_video", "upscaler", "interpolator", "music"]
SpaceFamily = Literal["text_to_video", "upscaler", "interpolator", "music"]

OFFLINE_BACKENDS: dict[str, str] = {
    "prompt_writer": "rule-based",
    "text_to_video": "procedural",
    "upscaler": "ffmpeg-lanczos",
    "interpolator": "opencv-dis-flow",
    "music": "procedural",
}


class OpenAIEndpoint(BaseModel):
    """Any OpenAI-compatible chat API: OpenAI, vLLM, Ollama, llama.cpp server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai"]
    base_url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://\S+$")
    model: str = Field(min_length=1, max_length=200)
    api_key_env: str = Field("OPENAI_API_KEY", description="variable holding the API key")
    batch_size: int = Field(4, ge=1, le=20, description="prompts asked for per request")
    temperature: float = Field(0.9, ge=0, le=2, allow_inf_nan=False)
    timeout_seconds: float = Field(60, gt=0, le=3600, description="per request")
    total_seconds: float = Field(
        120, gt=0, le=3600, description="per prompt: every request and retry included"
    )
    rate_limit_retries: int = Field(5, ge=0, le=20, description="on 429, 5xx and timeouts")
    max_attempts: int = Field(3, ge=1, le=10, description="requests before invalid output fails")

    @property
    def family(self) -> str:
        return "prompt_writer"


class SpaceCall(BaseModel):
    """How one Space is called: endpoint and its inputs, with {placeholders} for our values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_name: str | None = None
    fn_index: int | None = None
    inputs: list[Any]


# The calls the original AI WebTV made: Zeroscope V2 576w's /run (prompt, seed, 24 frames, 35
# steps), Zeroscope XL with the prompt and the take, FILM's fn_index 1 (video, one interpolation
# step, fps), MusicGen with a prompt and a length. A Space that differs overrides them.
DEFAULT_SPACE_CALLS: dict[str, SpaceCall] = {
    "text_to_video": SpaceCall(api_name="/run", inputs=["{prompt}", "{seed}", "{frames}", 35]),
    "upscaler": SpaceCall(api_name="/predict", inputs=["{prompt}", "{video}"]),
    "interpolator": SpaceCall(fn_index=1, inputs=["{video}", "{interpolation_steps}", "{fps}"]),
    "music": SpaceCall(api_name="/predict", inputs=["{prompt}", "{seconds}"]),
}


class TakeShape(BaseModel):
    """The size and rate a text-to-video Space renders at: its takes then cover the whole clip
    at that rate (no frames to invent after), at that size (an upscaler brings them to the
    broadcast size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(ge=32, le=1280)
    height: int = Field(ge=32, le=1280)
    fps: int = Field(ge=4, le=60)


class SpacePreset(BaseModel):
    """A model served by `webtv spaces --model <app>` (spaces/model_apps.py), with the call
    that suits it; a pool names it as `preset:` (docs/models.md lists them)."""

    model_config = ConfigDict(frozen=True)

    family: SpaceFamily
    weights: str  # the Hugging Face repository its weights come from
    call: SpaceCall
    take: TakeShape | None = None


LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"

SPACE_PRESETS: dict[str, SpacePreset] = {
    # LTX-Video 0.9.7 distilled: 8 steps without guidance, at half the broadcast size (the
    # latent upsampler doubles it), 24 fps.
    "ltx-video": SpacePreset(
        family="text_to_video",
        weights="Lightricks/LTX-Video-0.9.7-distilled",
        call=SpaceCall(
            api_name="/run",
            inputs=[
                "{prompt}",
                "{seed}",
                "{frames}",
                8,
                "{fps}",
                "{width}",
                "{height}",
                1.0,
                LTX_NEGATIVE_PROMPT,
                "{image}",
            ],
        ),
        take=TakeShape(width=512, height=288, fps=24),
    ),
    "ltx-upscaler": SpacePreset(
        family="upscaler",
        weights="Lightricks/ltxv-spatial-upscaler-0.9.7",
        call=SpaceCall(api_name="/predict", inputs=["{prompt}", "{video}"]),
    ),
    "musicgen": SpacePreset(
        family="music",
        weights="facebook/musicgen-small",
        call=SpaceCall(api_name="/predict", inputs=["{prompt}", "{seconds}", "{seed}"]),
    ),
}


class GradioSpacePool(BaseModel):
    """Duplicated Gradio Spaces serving one model family; calls fail over between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["gradio"]
    family: SpaceFamily
    spaces: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=64, description="Space ids (owner/name) or URLs"
    )
    preset: str | None = Field(None, description="a model of `webtv spaces --model`")
    take: TakeShape | None = Field(None, description="text-to-video: what the Spaces render")
    api_name: str | None = None
    fn_index: int | None = None
    inputs: list[Any] | None = None
    token_env: str = Field("HF_TOKEN", description="variable holding a Hugging Face token")
    timeout_seconds: float = Field(600, gt=0, le=7200, description="per call")
    rounds: int = Field(3, ge=1, le=10, description="passes over the pool before giving up")
    backoff_seconds: float = Field(2.0, ge=0, le=600, description="first wait between passes")
    max_concurrent_calls: int = Field(2, ge=1, le=64, description="per pool and process")
    max_answer_mb: float = Field(256, gt=0, le=4096, description="largest answer file fetched")

    @model_validator(mode="before")
    @classmethod
    def _take_of_preset(cls, data: Any) -> Any:
        preset = SPACE_PRESETS.get(data.get("preset") or "") if isinstance(data, dict) else None
        if preset is not None and preset.take is not None and data.get("take") is None:
            return {**data, "take": preset.take}
        return data

    @model_validator(mode="after")
    def _one_endpoint(self) -> GradioSpacePool:
        if self.api_name is not None and self.fn_index is not None:
            raise ValueError("give api_name or fn_index, not both")
        if self.preset is not None:
            preset = SPACE_PRESETS.get(self.preset)
            if preset is None:
                raise ValueError(
                    f"unknown preset {self.preset!r} (known: {', '.join(SPACE_PRESETS)})"
                )
            if preset.family != self.family:
                raise ValueError(f"the preset {self.preset!r} is a {preset.family} model")
        if self.take is not None and self.family != "text_to_video":
            raise ValueError("only a text_to_video pool renders takes of a shape (take:)")
        return self

    @property
    def call(self) -> SpaceCall:
        """The pool's own api_name/fn_index/inputs, else its preset's, else its family's."""
        preset = SPACE_PRESETS.get(self.preset or "")
        default = preset.call if preset else DEFAULT_SPACE_CALLS[self.family]
        if self.api_name is None and self.fn_index is None:
            api_name, fn_index = default.api_name, default.fn_index
        else:
            api_name, fn_index = self.api_name, self.fn_index
        return SpaceCall(api_name=api_name, fn_index=fn_index, inputs=self.inputs or default.inputs)


ModelEndpoint = Annotated[OpenAIEndpoint | GradioSpacePool, Field(discriminator="kind")]
