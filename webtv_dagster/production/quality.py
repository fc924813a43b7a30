"""Quality checks a broadcast clip must pass before it may air.

Each check measures the finished file with FFmpeg (ffprobe, blackdetect, freezedetect,
silencedetect, loudnorm's EBU R128 analysis) and says why it failed in words an operator can
act on. The Dagster asset checks of `broadcast_clip` report these, one per check and clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from webtv_dagster.broadcast_profile import BroadcastProfile
from webtv_dagster.media.captions import Overlay, drawn_box, title_safe
from webtv_dagster.media.ffmpeg import MediaInfo, MediaToolError, probe
from webtv_dagster.media.inspection import ClipMeasurements, Loudness, Spans, measure_clip


class QualityLimits(BaseModel):
    """How far a clip may stray before it is kept off air."""

    duration_tolerance_seconds: float = Field(0.05, description="vs the channel's clip length")
    max_black_share: float = Field(0.5, description="share of the clip that may be black")
    max_frozen_share: float = Field(0.5, description="share of the clip that may be still")
    max_silent_share: float = Field(0.5, description="share of the clip that may be silent")
    loudness_window_lu: float = Field(2.0, description="integrated loudness within target +- this")
    max_true_peak_db: float = Field(-1.0, description="true peak at most this (dBTP)")


class QualityCheck(BaseModel):
    name: str
    passed: bool
    reason: str = Field(description="what was measured, and what was expected if it failed")
    measured: dict[str, float | int | str] = Field(default_factory=dict)


class QualityReport(BaseModel):
    """qc.json: every check's verdict for one broadcast clip."""

    clip_id: str
    passed: bool
    checks: list[QualityCheck]

    def failures(self) -> list[QualityCheck]:
        return [check for check in self.checks if not check.passed]

    def summary(self) -> str:
        failed = self.failures()
        if not failed:
            return "passed every quality check"
        return "failed quality checks: " + "; ".join(f"{c.name}: {c.reason}" for c in failed)


# The checks, in the order they run (their names are also the Dagster asset check names).
CHECK_DESCRIPTIONS = {
    "decodes": "Every video and audio frame decodes without errors.",
    "duration": "Video and audio last the channel's clip length.",
    "broadcast_profile": "Resolution, fps, pixel format, codecs, audio rate and channels, and "
    "the keyframe interval match the broadcast profile (what stream-copy playout needs).",
    "not_black": "At most half the clip is black (blackdetect).",
    "not_frozen": "At most half the clip is a still picture, or flickers between two or three "
    "frames (freezedetect on every frame, every 2nd and every 3rd).",
    "not_silent": "At most half the clip is silent (silencedetect).",
    "loudness": "Integrated loudness within 2 LU of -16 LUFS, true peak at most -1 dBTP "
    "(EBU R128, as loudnorm measures it).",
    "graphics_title_safe": "On-air graphics (the bug, the lower third) stay inside the "
    "title-safe area, the middle 90% of each side.",
}
CHECK_NAMES = list(CHECK_DESCRIPTIONS)


def _check_decodes(info: MediaInfo, measured: ClipMeasurements, frames: int, profile):
    """Every video frame decodes and every audio frame is there, without decoder errors: a
    damaged file can carry intact headers (so ffprobe's durations look right) over missing or
    broken media."""
    audio_frames = frames * profile.samples_per_frame // 1024  # AAC frames of 1024 samples
    audio_packets = (info.audio.frames or 0) if info.audio else 0
    counted = {"video": measured.video_frames, "audio": audio_packets}
    expected = {"video": frames, "audio": audio_frames}
    problems = [
        f"{kind}: {counted[kind]} of {want} frames decode"
        for kind, want in expected.items()
        if counted[kind] < want
    ]
    if measured.decoder_errors:
        problems.append(f"decoder errors: {' | '.join(measured.decoder_errors[-3:])}")
    reason = "; ".join(problems) or f"{frames} video and {audio_frames} audio frames decode"
    return not problems, reason, {f"{kind}_frames": n for kind, n in counted.items()}


def _check_duration(info: MediaInfo, expected_seconds: float, limits: QualityLimits):
    video = info.video.duration if info.video else 0.0
    audio = info.audio.duration if info.audio else 0.0
    off = max(abs(video - expected_seconds), abs(audio - expected_seconds))
    passed = off <= limits.duration_tolerance_seconds
    reason = f"video {video:.3f} s, audio {audio:.3f} s"
    if not passed:
        reason += f"; expected {expected_seconds:.3f} s +- {limits.duration_tolerance_seconds} s"
    return passed, reason, {"video_seconds": video, "audio_seconds": audio}


def _check_profile(info: MediaInfo, profile: BroadcastProfile):
    problems = []
    video, audio = info.video, info.audio
    if video is None:
        problems.append("no video stream")
    else:
        got = (video.codec, video.width, video.height, round(video.fps, 3), video.pix_fmt)
        want = (profile.video_codec, profile.width, profile.height, profile.fps, profile.pix_fmt)
        if got != want:
            problems.append(f"video {got} is not {want}")
        keyframes = [round(time, 3) for time in video.keyframe_times or []]
        if not profile.keyframes_fit(keyframes, video.duration):
            interval = profile.keyframe_interval / profile.fps
            problems.append(f"keyframes at {keyframes} s, not every {interval:g} s from 0")
    if audio is None:
        problems.append("no audio stream")
    else:
        got = (audio.codec, audio.sample_rate, audio.channels)
        want = (profile.audio_codec, profile.sample_rate, profile.channels)
        if got != want:
            problems.append(f"audio {got} is not {want}")
    reason = "; ".join(problems) or (
        f"{profile.video_codec} {profile.width}x{profile.height} {profile.fps} fps "
        f"{profile.pix_fmt}, keyframe every {profile.keyframe_interval} frames, "
        f"{profile.audio_codec} {profile.sample_rate} Hz x{profile.channels}"
    )
    return not problems, reason, {}


def _share_check(spans: Spans, duration: float, limit: float, what: str):
    share = spans.seconds / duration if duration > 0 else 1.0
    passed = share <= limit
    reason = f"{share:.0%} of the clip {what} ({spans.spans} span(s), {spans.seconds:.2f} s)"
    if not passed:
        reason += f"; at most {limit:.0%} allowed"
    return passed, reason, {"seconds": spans.seconds, "share": round(share, 3)}


def _check_loudness(loudness: Loudness, profile: BroadcastProfile, limits: QualityLimits):
    off = abs(loudness.integrated_lufs - profile.loudness_lufs)
    passed = off <= limits.loudness_window_lu and loudness.true_peak_db <= limits.max_true_peak_db
    reason = f"{loudness.integrated_lufs:.1f} LUFS, true peak {loudness.true_peak_db:.1f} dBTP"
    if not passed:
        reason += (
            f"; expected {profile.loudness_lufs:g} +- {limits.loudness_window_lu:g} LUFS and a "
            f"peak at most {limits.max_true_peak_db:g} dBTP"
        )
    figures = {"integrated_lufs": loudness.integrated_lufs, "true_peak_db": loudness.true_peak_db}
    # Silence measures -inf, which JSON cannot carry: the reason says it.
    return passed, reason, {name: v for name, v in figures.items() if math.isfinite(v)}


def _check_graphics(graphics: Overlay | None, seconds: float, profile: BroadcastProfile):
    if graphics is None:
        return True, "no on-air graphics", {}
    safe = title_safe(profile.width, profile.height)
    drawn = drawn_box(graphics, profile.width, profile.height, seconds, profile.fps)
    if drawn is None:
        return True, "the graphics draw nothing", {}
    where = [drawn.left, drawn.top, drawn.right, drawn.bottom]
    if not drawn.inside(safe):
        limit = [safe.left, safe.top, safe.right, safe.bottom]
        return False, f"graphics drawn over {where}, outside the title-safe {limit}", {}
    return True, "inside the title-safe area", {"graphics_box": str(where)}


def inspect_broadcast_clip(
    path: Path,
    clip_id: str,
    frames: int,
    profile: BroadcastProfile,
    limits: QualityLimits,
    graphics: Overlay | None = None,
) -> QualityReport:
    """Runs every check on the clip. A file FFmpeg cannot read fails every check with FFmpeg's
    reason, rather than raising: the report is what the operator sees."""
    expected = frames / profile.fps
    try:
        info = probe(path, keyframes=True)
    except MediaToolError as error:
        failed = [
            QualityCheck(name=name, passed=False, reason=f"unreadable: {error}")
            for name in CHECK_NAMES
        ]
        return QualityReport(clip_id=clip_id, passed=False, checks=failed)
    duration = info.video.duration if info.video else info.duration
    try:
        decoded: ClipMeasurements | MediaToolError = measure_clip(path, duration)
    except MediaToolError as error:  # a stream missing, or damage that stops the decoder
        decoded = error
    measurements: dict[str, Callable] = {
        "duration": lambda: _check_duration(info, expected, limits),
        "broadcast_profile": lambda: _check_profile(info, profile),
        "graphics_title_safe": lambda: _check_graphics(graphics, expected, profile),
    }
    if isinstance(decoded, ClipMeasurements):
        measurements |= {
            "decodes": lambda: _check_decodes(info, decoded, frames, profile),
            "not_black": lambda: _share_check(
                decoded.black, duration, limits.max_black_share, "is black"
            ),
            "not_frozen": lambda: _share_check(
                decoded.frozen, duration, limits.max_frozen_share, "is frozen"
            ),
            "not_silent": lambda: _share_check(
                decoded.silent, duration, limits.max_silent_share, "is silent"
            ),
            "loudness": lambda: _check_loudness(decoded.loudness, profile, limits),
        }
    checks = []
    for name in CHECK_NAMES:
        if name not in measurements:  # the one decode of the clip failed: say why, per check
            passed, reason, measured = False, f"could not measure: {decoded}", {}
        else:
            try:
                passed, reason, measured = measurements[name]()
            except MediaToolError as error:
                passed, reason, measured = False, f"could not measure: {error}", {}
        checks.append(QualityCheck(name=name, passed=passed, reason=reason, measured=measured))
    return QualityReport(clip_id=clip_id, passed=all(c.passed for c in checks), checks=checks)
