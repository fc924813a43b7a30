"""Normalizing a finished clip to the broadcast profile.

Every aired clip has the same resolution, frame rate, pixel format, keyframe interval, audio
rate, channel layout and loudness, and its audio is exactly as long as its video, so that clips
can be joined by stream copy without a gap.
"""

from __future__ import annotations

import math
from pathlib import Path

from webtv_dagster.broadcast_profile import BroadcastProfile
from webtv_dagster.media.captions import Overlay
from webtv_dagster.media.ffmpeg import MediaToolError, probe, run_ffmpeg
from webtv_dagster.media.inspection import Loudness, measure_loudness


def broadcast_aac(profile: BroadcastProfile) -> list[str]:
    """FFmpeg arguments that encode audio as the profile's AAC, in an MP4 that starts playing
    before it is all read."""
    options = {
        "-c:a": "aac",
        "-b:a": profile.audio_bitrate,
        "-ar": str(profile.sample_rate),
        "-ac": str(profile.channels),
        "-movflags": "+faststart",
    }
    return [part for option in options.items() for part in option]


def broadcast_x264(profile: BroadcastProfile) -> list[str]:
    """FFmpeg arguments that encode video as the profile's H.264: a keyframe exactly every
    `keyframe_interval` frames (what stream-copy playout cuts on)."""
    gop = str(profile.keyframe_interval)
    return [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-profile:v",
        "high",
        "-g",
        gop,
        "-keyint_min",
        gop,
        "-sc_threshold",
        "0",
        "-pix_fmt",
        profile.pix_fmt,
    ]


def fits_profile(video: Path, frames: int, profile: BroadcastProfile) -> bool:
    """Whether `video` already is the profile's picture, `frames` long, with the profile's
    keyframes (the interpolators encode it so): then it is aired as it is, not encoded again."""
    info = probe(video, keyframes=True).video
    if info is None or info.keyframe_times is None:
        return False
    return (
        info.codec == profile.video_codec
        and (info.width, info.height) == (profile.width, profile.height)
        and abs(info.fps - profile.fps) < 1e-3
        and info.pix_fmt == profile.pix_fmt
        and info.frames == frames
        and profile.keyframes_fit(info.keyframe_times, frames / profile.fps)
    )


def loudnorm_filter(profile: BroadcastProfile, measured: Loudness) -> str:
    """One gain for the whole clip, no pumping: loudnorm's second, linear pass. Music too peaky
    for that gain under the peak ceiling (loudnorm would fall back to its dynamic mode, which
    needs 3 s to act and left a model's 2.7 s score at -33 LUFS) gets the gain and a limiter
    that holds its peaks 1 dB under the ceiling, the margin for the AAC encoder's overshoot."""
    gain = profile.loudness_lufs - measured.integrated_lufs
    if measured.true_peak_db + gain > profile.true_peak_db:
        ceiling = 10 ** ((profile.true_peak_db - 1) / 20)
        return (
            f"volume={gain:.2f}dB,"
            f"alimiter=limit={ceiling:.4f}:attack=1:release=50:level=false:latency=true"
        )
    return (
        f"loudnorm=I={profile.loudness_lufs}:TP={profile.true_peak_db}:LRA={profile.loudness_range}"
        f":measured_I={measured.integrated_lufs}:measured_TP={measured.true_peak_db}"
        f":measured_LRA={measured.loudness_range}:measured_thresh={measured.threshold}"
        f":offset={measured.target_offset}:linear=true"
    )


def normalize_clip(
    video: Path,
    music: Path,
    frames: int,
    output: Path,
    profile: BroadcastProfile,
    graphics: Overlay | None = None,
) -> None:
    """Muxes `video` with `music` into `output`, exactly `frames` frames long, in `profile`,
    with `graphics` drawn on it; video that already fits the profile, with no graphics to draw,
    is copied, not encoded again."""
    samples = frames * profile.samples_per_frame
    loudness = measure_loudness(music)
    if not math.isfinite(loudness.integrated_lufs):
        raise MediaToolError(
            f"{music.name} is silent, so it cannot be normalized to "
            f"{profile.loudness_lufs} LUFS: rerun the music stage of this clip"
        )
    audio_chain = (
        f"{loudnorm_filter(profile, loudness)},"
        f"aresample={profile.sample_rate},"
        f"aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"apad=whole_len={samples},atrim=end_sample={samples},asetpts=N/SR/TB"
    )
    if graphics is None and fits_profile(video, frames, profile):
        graph, video_out = f"[1:a]{audio_chain}[a]", ["-map", "0:v", "-c:v", "copy"]
    else:
        w, h = profile.width, profile.height
        video_chain = (
            f"scale={w}:{h}:force_original_aspect_ratio=decrease:flags=lanczos,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={profile.fps},"
            f"tpad=stop_mode=clone:stop=-1,trim=end_frame={frames}"
        )
        drawn = (graphics or Overlay()).graph("fitted", 2, "drawn")
        graph = (
            f"[0:v]{video_chain}[fitted];{drawn};[drawn]format={profile.pix_fmt}[v];"
            f"[1:a]{audio_chain}[a]"
        )
        video_out = ["-map", "[v]", *broadcast_x264(profile)]
    run_ffmpeg(
        [
            "-i",
            str(video),
            "-i",
            str(music),
            *(graphics.inputs() if graphics is not None else []),
            "-filter_complex",
            graph,
            *video_out,
            "-map",
            "[a]",
            *broadcast_aac(profile),
            str(output),
        ],
        f"normalizing {video.name} + {music.name} to the broadcast profile",
    )


def render_slate(output: Path, frames: int, profile: BroadcastProfile) -> Path:
    """A test card in `profile`: SMPTE colour bars with silent audio, exactly `frames` frames
    long, made by FFmpeg alone (lavfi sources, no model): what a playout airs when it has
    nothing else, not even its channel's ident."""
    samples = frames * profile.samples_per_frame
    size = f"{profile.width}x{profile.height}"
    partial = output.with_suffix(".part.mp4")
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            f"smptehdbars=size={size}:rate={profile.fps}",
            "-f",
            "lavfi",
            "-i",
            f"anullsrc=r={profile.sample_rate}:cl=stereo",
            "-filter_complex",
            f"[0:v]trim=end_frame={frames},format={profile.pix_fmt}[v];"
            f"[1:a]atrim=end_sample={samples},asetpts=N/SR/TB[a]",
            "-map",
            "[v]",
            *broadcast_x264(profile),
            "-map",
            "[a]",
            *broadcast_aac(profile),
            str(partial),
        ],
        "making the test card (slate)",
    )
    partial.replace(output)
    return output
