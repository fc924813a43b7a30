"""Making one clip, stage by stage: prompt, raw take, upscaled take, interpolated clip, music,
broadcast clip. Each stage reads its inputs from the store, runs a backend in a scratch folder
and writes its object back; Dagster assets only call these functions.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from webtv_dagster import clips
from webtv_dagster.backends.interpolator import InterpolationRequest
from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.moderator import Moderator
from webtv_dagster.backends.music import MusicRequest, music_prompt
from webtv_dagster.backends.prompt_writer import SceneShot
from webtv_dagster.backends.registry import ModelBackends
from webtv_dagster.backends.text_to_video import TakeRequest
from webtv_dagster.backends.upscaler import UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import MediaInfo, probe
from webtv_dagster.media.frames import last_frame_png
from webtv_dagster.media.preview import contact_sheet_jpeg, waveform_png
from webtv_dagster.media_store import MediaStore
from webtv_dagster.production.graphics import bug_image_digest, clip_overlay
from webtv_dagster.production.quality import QualityLimits, QualityReport, inspect_broadcast_clip
from webtv_dagster.production.shot_requests import RequestQueue
from webtv_dagster.prompt_rules import prompt_problems

RECENT_PROMPTS = 8  # how many earlier prompts of the channel the writer must not repeat


# Answers asked of a writer for one clip before the stage fails for refused prompts.
WRITES_BEFORE_FAILING = 3


class RefusedPrompt(BaseModel):
    prompt: str
    reason: str
    by: str  # the moderator that refused it


class ShotPromptRecord(BaseModel):
    """prompt.json: what every later stage of the clip reads."""

    clip_id: str
    channel: str
    prompt: str
    seed: int
    backend: str
    endpoint: str
    # The other usable prompts of the writer's answer: spares[i] is for the clip i + 1 after
    # this one (within RECENT_PROMPTS), so no prompt that was paid for is thrown away.
    spares: list[str] = Field(default_factory=list, max_length=RECENT_PROMPTS)
    from_batch_of: str | None = None  # the clip whose writer's answer held this prompt
    # The viewer's shot request the clip was made of (webtv_dagster/production/shot_requests.py).
    request_id: str | None = None
    idea: str | None = None
    requested_by: str | None = None
    # The prompts the writer wrote for this clip that the channel's moderators refused.
    refused: list[RefusedPrompt] = Field(default_factory=list)


class PromptRefusedError(RuntimeError):
    """The writer kept writing prompts the channel's moderators refuse."""


class SceneOrderError(RuntimeError):
    """A clip that continues a scene came before the clip it continues."""


class StageReport(BaseModel):
    """What a stage made, for the operator: object, media facts, preview, provenance."""

    clip_id: str
    uri: str
    size_bytes: int
    sha256: str | None = None
    backend: str
    endpoint: str
    attempts: int = 1
    prompt: str
    seed: int
    work_seconds: float
    media: MediaInfo | None = None
    quality: QualityReport | None = None
    preview: str | None = None  # name of the preview object in the clip's folder
    extra: dict[str, Any] = Field(default_factory=dict)


class ClipProduction:
    """Runs the stages of one channel's clips against one store.

    Made once for many clips (every clip of the channel in a step, from any number of threads:
    its backends' calls into a pool of Spaces are bounded and spread across them all), then
    closed: `close()`, or `with ClipProduction(...) as production:`. It owns its backends and
    closes them (their Spaces' clients, their LLM's HTTP client).
    """

    def __init__(
        self,
        store: MediaStore,
        channel: Channel,
        backends: ModelBackends,
        requests: RequestQueue | None = None,
        moderators: Sequence[Moderator] = (),
    ):
        self.store = store
        self.channel = channel
        self.backends = backends
        self.requests = requests  # None: the channel takes no requests
        self.moderators = moderators  # what a written prompt passes before its clip is made

    def close(self) -> None:
        self.backends.close()

    def __enter__(self) -> ClipProduction:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _record(self, clip: ClipId) -> ShotPromptRecord:
        return ShotPromptRecord.model_validate(self.store.get_json(clip.object_key(clips.PROMPT)))

    def _recent_records(self, clip: ClipId) -> dict[int, ShotPromptRecord]:
        """The prompt records of the channel's RECENT_PROMPTS clips before `clip`, by how many
        clips before it they are."""
        recent = {}
        for distance in range(1, min(RECENT_PROMPTS, clip.number - 1) + 1):
            earlier = ClipId(channel=clip.channel, number=clip.number - distance)
            try:
                recent[distance] = self._record(earlier)
            except FileNotFoundError:
                continue
        return recent

    def _spare_for(self, recent: dict[int, ShotPromptRecord]) -> ShotPromptRecord | None:
        """The spare the nearest earlier answer kept for this clip as a record of this
        channel's writer, if it can still air (the channel's rules may have changed, a rerun
        of a clip between may have aired the same words)."""
        prompts = {record.prompt.lower() for record in recent.values()}
        for distance, record in sorted(recent.items()):
            if len(record.spares) >= distance:
                spare = record.spares[distance - 1]
                if spare.lower() in prompts or prompt_problems(spare, self.channel):
                    return None
                return record.model_copy(
                    update={"prompt": spare, "spares": [], "from_batch_of": record.clip_id}
                )
        return None

    def _shown(self, prompt: str, refused: list[RefusedPrompt]) -> bool:
        """Whether the channel's moderators let `prompt` be shown and aired; a refusal is
        added to `refused`."""
        for moderator in self.moderators:
            verdict = moderator.judge(prompt, self.channel)
            if not verdict.allowed:
                refused.append(
                    RefusedPrompt(prompt=prompt, reason=verdict.reason, by=verdict.decided_by)
                )
                return False
        return True

    def _scene_shot(self, clip: ClipId, recent: dict[int, ShotPromptRecord]) -> SceneShot | None:
        """The clip's place in its scene, with the prompts of the scene's shots before it
        (those written: `recent`, by distance back), for a channel with scenes."""
        if self.channel.scene_clips == 1:
            return None
        scene, shot = self.channel.scene_of(clip.number)
        before = [recent[back].prompt for back in range(shot, 0, -1) if back in recent]
        return SceneShot(scene=scene, shot=shot, shots=self.channel.scene_clips, before=before)

    def write_shot_prompt(
        self, clip: ClipId, reroll: int = 0, keep_prompt: bool = False
    ) -> StageReport:
        """Writes prompt.json. `reroll` picks another seed (0: the clip's default); with
        `keep_prompt` the clip keeps the prompt it has and only its seed changes, so every
        later stage makes a new take of the same shot. A clip in a request slot is made of the
        oldest approved viewer request (a rerun keeps its request); otherwise, without a reroll,
        the clip takes the spare an earlier clip's writer kept for it when there is one, else
        the writer is asked."""
        started = time.monotonic()
        seed = clip.seed(self.channel, reroll)
        attempts = 0
        if keep_prompt:
            record = self._record(clip).model_copy(update={"seed": seed})
        else:
            recent = self._recent_records(clip)
            request = self.requests.claim(self.channel, clip) if self.requests else None
            scene = self._scene_shot(clip, recent)
            spare = None if reroll or request or scene else self._spare_for(recent)
            refused: list[RefusedPrompt] = []
            if spare is not None and self._shown(spare.prompt, refused):
                record = spare.model_copy(update={"clip_id": clip.key, "seed": seed})
            else:
                writer = self.backends.prompt_writer
                ordered = [recent[d].prompt for d in sorted(recent, reverse=True)]
                idea = request and request.idea
                for asked in range(WRITES_BEFORE_FAILING):
                    # Another seed each time: a rule-based writer would write the same again.
                    written = writer.write(self.channel, seed + asked, ordered, idea, scene)
                    attempts += written.attempts
                    candidates = [written.prompt, *written.spares]
                    shown = next(
                        (n for n, text in enumerate(candidates) if self._shown(text, refused)),
                        None,
                    )
                    if shown is not None:
                        break
                else:
                    reasons = "; ".join(f"{r.prompt!r}: {r.reason}" for r in refused[-3:])
                    raise PromptRefusedError(
                        f"{clip.key}: the prompt writer {written.backend} ({written.endpoint}) "
                        f"wrote only text this channel does not show, {len(refused)} prompt(s) "
                        f"in {WRITES_BEFORE_FAILING} answers; the last: {reasons}"
                    )
                record = ShotPromptRecord(
                    clip_id=clip.key,
                    channel=self.channel.slug,
                    prompt=candidates[shown],
                    seed=seed,
                    backend=written.backend,
                    endpoint=written.endpoint,
                    spares=candidates[shown + 1 :][:RECENT_PROMPTS],
                    request_id=request and request.id,
                    idea=request and request.idea,
                    requested_by=request and request.requester,
                )
            record.refused = refused
        stored = self.store.put_json(clip.object_key(clips.PROMPT), record.model_dump())
        extra = {"words": len(record.prompt.split()), "reroll": reroll}
        if record.from_batch_of:
            extra["from_batch_of"] = record.from_batch_of
        if record.refused:
            extra["refused_prompts"] = len(record.refused)
            extra["refused_because"] = record.refused[-1].reason
        if record.request_id:
            extra.update(
                request_id=record.request_id, idea=record.idea, requested_by=record.requested_by
            )
        return StageReport(
            clip_id=clip.key,
            uri=stored.uri,
            size_bytes=stored.size_bytes,
            backend=record.backend,
            endpoint=record.endpoint,
            attempts=attempts,
            prompt=record.prompt,
            seed=seed,
            work_seconds=time.monotonic() - started,
            extra=extra,
        )

    def _media_stage(
        self,
        clip: ClipId,
        inputs: Sequence[str],
        output_name: str,
        make: Callable[[list[Path], ShotPromptRecord, Path], ModelCall],
    ) -> StageReport:
        """Downloads `inputs`, runs `make` into `output_name`, probes it and uploads it with its
        preview (clips.preview_name) beside it."""
        record = self._record(clip)
        with tempfile.TemporaryDirectory(prefix=f"webtv-{clip.key}-") as scratch:
            folder = Path(scratch)
            sources = [
                self.store.download_file(clip.object_key(name), folder / f"in-{name}")
                for name in inputs
            ]
            output = folder / output_name
            started = time.monotonic()
            call = make(sources, record, output)
            work_seconds = time.monotonic() - started
            media = probe(output, keyframes=True)
            content_type = "audio/flac" if media.video is None else "video/mp4"
            preview = self._store_preview(clip, output_name, output, media)
            stored = self.store.upload_file(output, clip.object_key(output_name), content_type)
        return StageReport(
            clip_id=clip.key,
            uri=stored.uri,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            backend=call.backend,
            endpoint=call.endpoint,
            attempts=call.attempts,
            prompt=record.prompt,
            seed=record.seed,
            work_seconds=work_seconds,
            media=media,
            preview=preview,
            extra={f"model_{key}": value for key, value in call.details.items()},
        )

    def _store_preview(
        self, clip: ClipId, output_name: str, output: Path, media: MediaInfo
    ) -> str | None:
        """Stores the preview of a stage's output beside it; returns its name (None for a video
        stage whose output has no video stream: its quality report says so)."""
        name = clips.preview_name(output_name)
        content_type = clips.preview_content_type(name)
        if content_type == "image/png":
            image = waveform_png(output)
        elif media.video is not None:
            image = contact_sheet_jpeg(output, media.video)
        else:
            return None
        self.store.put_bytes(clip.object_key(name), image, content_type)
        return name

    def render_raw_take(self, clip: ClipId) -> StageReport:
        """The take; a clip that continues a scene starts from the last frame of the take
        before it, which must be made first."""
        backend = self.backends.text_to_video
        _, shot = self.channel.scene_of(clip.number)
        before = ClipId(channel=clip.channel, number=clip.number - 1) if shot else None

        def make(_: list[Path], record: ShotPromptRecord, output: Path) -> ModelCall:
            first_frame = None
            if before:
                try:
                    take = self.store.download_file(
                        before.object_key(clips.RAW_TAKE), output.with_name("before.mp4")
                    )
                except FileNotFoundError:
                    raise SceneOrderError(
                        f"{clip.key} continues the scene of {before.key}, whose take is not "
                        f"made yet: make {before.key} first (a scene's takes are made in order)"
                    ) from None
                first_frame = last_frame_png(take, output.with_name("first-frame.png"))
            request = TakeRequest(
                prompt=record.prompt,
                seed=record.seed,
                frames=self.channel.take_frames,
                fps=self.channel.take_fps,
                seconds=self.channel.clip_seconds,
                first_frame=first_frame,
            )
            return backend.render(request, output)

        report = self._media_stage(clip, [], clips.RAW_TAKE, make)
        if before:
            report.extra["continues"] = before.key
            if report.extra.pop("model_image_conditioned", None) is not True:
                report.extra["continuity"] = f"lost: {report.backend} takes no first frame"
        return report

    def upscale_take(self, clip: ClipId) -> StageReport:
        backend = self.backends.upscaler

        def make(sources: list[Path], record: ShotPromptRecord, output: Path) -> ModelCall:
            take = probe(sources[0]).video
            if (
                take
                and take.width >= BROADCAST_PROFILE.width
                and take.height >= BROADCAST_PROFILE.height
            ):
                shutil.copyfile(sources[0], output)
                return ModelCall(
                    backend="none", endpoint=f"passed on at its native {take.width}x{take.height}"
                )
            return backend.upscale(sources[0], UpscaleRequest(prompt=record.prompt), output)

        return self._media_stage(clip, [clips.RAW_TAKE], clips.UPSCALED_TAKE, make)

    def interpolate_clip(self, clip: ClipId) -> StageReport:
        backend = self.backends.interpolator
        request = InterpolationRequest(fps=BROADCAST_PROFILE.fps, frames=self.channel.clip_frames)

        def make(sources: list[Path], _: ShotPromptRecord, output: Path) -> ModelCall:
            take = probe(sources[0]).video
            # A take rendered at the broadcast rate for the whole clip needs no invented frames.
            if take and abs(take.fps - request.fps) < 0.01 and (take.frames or 0) >= request.frames:
                shutil.copyfile(sources[0], output)
                return ModelCall(
                    backend="none", endpoint=f"nothing interpolated: native {request.fps} fps"
                )
            return backend.interpolate(sources[0], request, output)

        return self._media_stage(clip, [clips.UPSCALED_TAKE], clips.INTERPOLATED_CLIP, make)

    def compose_music(self, clip: ClipId) -> StageReport:
        backend = self.backends.music

        def make(_: list[Path], record: ShotPromptRecord, output: Path) -> ModelCall:
            request = MusicRequest(
                prompt=music_prompt(record.prompt, self.channel.music_mood),
                mood=self.channel.music_mood,
                seed=record.seed,
                seconds=self.channel.clip_seconds,
                sample_rate=BROADCAST_PROFILE.sample_rate,
            )
            return backend.compose(request, output)

        report = self._media_stage(clip, [], clips.MUSIC_TRACK, make)
        # What the music model was asked: the shot's prompt is part of it, once.
        report.prompt = music_prompt(report.prompt, self.channel.music_mood)
        report.extra["music_mood"] = self.channel.music_mood
        return report

    def assemble_broadcast_clip(self, clip: ClipId) -> StageReport:
        """Normalizes the clip to the broadcast profile and checks its quality (qc.json). Only a
        clip that passes gets its broadcast record, which is what makes it airable; one that
        fails stays stored, with the report saying why, and loses any earlier record."""
        quality: list[QualityReport] = []

        def make(sources: list[Path], record: ShotPromptRecord, output: Path) -> ModelCall:
            video, music = sources
            frames = self.channel.clip_frames
            graphics = clip_overlay(
                self.channel,
                BROADCAST_PROFILE,
                record.prompt,
                record.idea,
                record.requested_by,
                output.parent,
            )
            normalize_clip(video, music, frames, output, BROADCAST_PROFILE, graphics)
            limits = QualityLimits()
            quality.append(
                inspect_broadcast_clip(
                    output, clip.key, frames, BROADCAST_PROFILE, limits, graphics
                )
            )
            return ModelCall(backend="ffmpeg-broadcast-profile", endpoint="offline")

        report = self._media_stage(
            clip, [clips.INTERPOLATED_CLIP, clips.MUSIC_TRACK], clips.BROADCAST_CLIP, make
        )
        report.quality = quality[0]
        if self.channel.graphics.bug_image is not None:
            report.extra["bug_image"] = bug_image_digest(self.channel.graphics.bug_image)
        self.store.put_json(clip.object_key(clips.QUALITY_REPORT), report.quality.model_dump())
        if not report.quality.passed:
            self.store.delete(clip.object_key(clips.BROADCAST_RECORD))
            return report
        # The record is written last: its presence is what makes the clip airable.
        airable = {
            **self._record(clip).model_dump(),
            "uri": report.uri,
            "key": clip.object_key(clips.BROADCAST_CLIP),
            "duration_seconds": report.media.duration if report.media else 0.0,
            "frames": self.channel.clip_frames,
            "size_bytes": report.size_bytes,
            "sha256": report.sha256,
        }
        self.store.put_json(clip.object_key(clips.BROADCAST_RECORD), airable)
        return report
