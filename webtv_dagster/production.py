"""Making one clip, stage by stage: prompt, raw take, upscaled take, interpolated clip, music,
broadcast clip. Each stage reads its inputs from the store, runs a backend in a scratch folder
and writes its object back; Dagster assets only call these functions.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from webtv_dagster import clips
from webtv_dagster.backends.interpolator import InterpolationRequest
from webtv_dagster.backends.music import MusicRequest, music_prompt
from webtv_dagster.backends.registry import ModelBackends
from webtv_dagster.backends.text_to_video import TakeRequest
from webtv_dagster.backends.upscaler import UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import MediaInfo, probe
from webtv_dagster.media.preview import contact_sheet_jpeg, markdown_image, waveform_png
from webtv_dagster.storage import MediaStore

RECENT_PROMPTS = 8  # how many earlier prompts of the channel the writer must not repeat


class ShotPromptRecord(BaseModel):
    """prompt.json: what every later stage of the clip reads."""

    clip_id: str
    channel: str
    prompt: str
    seed: int
    backend: str
    endpoint: str


class StageReport(BaseModel):
    """What a stage made, for the operator: object, media facts, preview, provenance."""

    clip_id: str
    uri: str
    size_bytes: int
    backend: str
    endpoint: str
    prompt: str
    seed: int
    work_seconds: float
    media: MediaInfo | None = None
    preview_markdown: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ClipProduction:
    """Runs the stages of one channel's clips against one store."""

    def __init__(self, store: MediaStore, channel: Channel, backends: ModelBackends):
        self.store = store
        self.channel = channel
        self.backends = backends

    def _record(self, clip: ClipId) -> ShotPromptRecord:
        return ShotPromptRecord.model_validate(self.store.get_json(clip.object_key(clips.PROMPT)))

    def _recent_prompts(self, clip: ClipId) -> list[str]:
        recent = []
        for number in range(max(1, clip.number - RECENT_PROMPTS), clip.number):
            earlier = ClipId(channel=clip.channel, number=number)
            try:
                recent.append(self._record(earlier).prompt)
            except FileNotFoundError:
                continue
        return recent

    def write_shot_prompt(self, clip: ClipId) -> StageReport:
        started = time.monotonic()
        seed = clip.seed(self.channel)
        writer = self.backends.prompt_writer
        written = writer.write(self.channel, seed, self._recent_prompts(clip))
        record = ShotPromptRecord(
            clip_id=clip.key,
            channel=self.channel.slug,
            prompt=written.prompt,
            seed=seed,
            backend=written.backend,
            endpoint=written.endpoint,
        )
        stored = self.store.put_json(clip.object_key(clips.PROMPT), record.model_dump())
        return StageReport(
            clip_id=clip.key,
            uri=stored.uri,
            size_bytes=stored.size_bytes,
            backend=record.backend,
            endpoint=record.endpoint,
            prompt=record.prompt,
            seed=seed,
            work_seconds=time.monotonic() - started,
            extra={"words": len(record.prompt.split())},
        )

    def _video_stage(
        self,
        clip: ClipId,
        source_name: str | None,
        output_name: str,
        backend: Any,
        make: Callable[[Path | None, ShotPromptRecord, Path], None],
    ) -> StageReport:
        record = self._record(clip)
        with tempfile.TemporaryDirectory(prefix=f"webtv-{clip.key}-") as scratch:
            folder = Path(scratch)
            source = None
            if source_name:
                source = self.store.download_file(
                    clip.object_key(source_name), folder / f"in-{source_name}"
                )
            output = folder / output_name
            started = time.monotonic()
            make(source, record, output)
            work_seconds = time.monotonic() - started
            media = probe(output)
            if output.suffix == ".flac":
                preview = markdown_image(waveform_png(output), "image/png", "waveform")
            else:
                preview = markdown_image(contact_sheet_jpeg(output), "image/jpeg", "frames")
            content_type = "audio/flac" if output.suffix == ".flac" else "video/mp4"
            stored = self.store.upload_file(output, clip.object_key(output_name), content_type)
        return StageReport(
            clip_id=clip.key,
            uri=stored.uri,
            size_bytes=stored.size_bytes,
            backend=backend.name,
            endpoint=backend.endpoint,
            prompt=record.prompt,
            seed=record.seed,
            work_seconds=work_seconds,
            media=media,
            preview_markdown=preview,
        )

    def render_raw_take(self, clip: ClipId) -> StageReport:
        backend = self.backends.text_to_video

        def make(_: Path | None, record: ShotPromptRecord, output: Path) -> None:
            request = TakeRequest(
                prompt=record.prompt,
                seed=record.seed,
                frames=self.channel.take_frames,
                fps=self.channel.take_fps,
            )
            backend.render(request, output)

        return self._video_stage(clip, None, clips.RAW_TAKE, backend, make)

    def upscale_take(self, clip: ClipId) -> StageReport:
        backend = self.backends.upscaler

        def make(source: Path | None, record: ShotPromptRecord, output: Path) -> None:
            assert source is not None
            backend.upscale(source, UpscaleRequest(prompt=record.prompt), output)

        return self._video_stage(clip, clips.RAW_TAKE, clips.UPSCALED_TAKE, backend, make)

    def interpolate_clip(self, clip: ClipId) -> StageReport:
        backend = self.backends.interpolator
        request = InterpolationRequest(fps=BROADCAST_PROFILE.fps, frames=self.channel.clip_frames)

        def make(source: Path | None, _: ShotPromptRecord, output: Path) -> None:
            assert source is not None
            backend.interpolate(source, request, output)

        return self._video_stage(clip, clips.UPSCALED_TAKE, clips.INTERPOLATED_CLIP, backend, make)

    def compose_music(self, clip: ClipId) -> StageReport:
        backend = self.backends.music

        def make(_: Path | None, record: ShotPromptRecord, output: Path) -> None:
            request = MusicRequest(
                prompt=music_prompt(record.prompt, self.channel.music_mood),
                mood=self.channel.music_mood,
                seed=record.seed,
                seconds=self.channel.clip_seconds,
                sample_rate=BROADCAST_PROFILE.sample_rate,
            )
            backend.compose(request, output)

        report = self._video_stage(clip, None, clips.MUSIC_TRACK, backend, make)
        report.extra["music_prompt"] = music_prompt(report.prompt, self.channel.music_mood)
        return report

    def assemble_broadcast_clip(self, clip: ClipId) -> StageReport:
        record = self._record(clip)
        with tempfile.TemporaryDirectory(prefix=f"webtv-{clip.key}-") as scratch:
            folder = Path(scratch)
            video = self.store.download_file(
                clip.object_key(clips.INTERPOLATED_CLIP), folder / clips.INTERPOLATED_CLIP
            )
            music = self.store.download_file(
                clip.object_key(clips.MUSIC_TRACK), folder / clips.MUSIC_TRACK
            )
            output = folder / clips.BROADCAST_CLIP
            started = time.monotonic()
            normalize_clip(video, music, self.channel.clip_frames, output, BROADCAST_PROFILE)
            work_seconds = time.monotonic() - started
            media = probe(output)
            preview = markdown_image(contact_sheet_jpeg(output), "image/jpeg", "frames")
            stored = self.store.upload_file(
                output, clip.object_key(clips.BROADCAST_CLIP), "video/mp4"
            )
        # The record is written last: its presence is what makes the clip airable.
        airable = {
            **record.model_dump(),
            "uri": stored.uri,
            "key": stored.key,
            "duration_seconds": media.duration,
            "frames": self.channel.clip_frames,
        }
        self.store.put_json(clip.object_key(clips.BROADCAST_RECORD), airable)
        return StageReport(
            clip_id=clip.key,
            uri=stored.uri,
            size_bytes=stored.size_bytes,
            backend="ffmpeg-broadcast-profile",
            endpoint="offline",
            prompt=record.prompt,
            seed=record.seed,
            work_seconds=work_seconds,
            media=media,
            preview_markdown=preview,
        )
