"""Broken inputs fail with errors that name the file and say what to do."""

import pytest

from webtv_dagster.backends.upscaler import LanczosUpscaler, UpscaleRequest
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import MediaToolError, probe, run_ffmpeg


def test_corrupt_video_is_named(tmp_path):
    corrupt = tmp_path / "raw.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(MediaToolError, match="ffprobe cannot read raw.mp4"):
        probe(corrupt)
    with pytest.raises(MediaToolError, match="ffmpeg failed while upscaling raw.mp4"):
        LanczosUpscaler().upscale(corrupt, UpscaleRequest(prompt="p"), tmp_path / "up.mp4")


def test_silent_music_is_refused_before_normalization(tmp_path):
    video = tmp_path / "clip.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc2=s=1024x576:r=24", "-frames:v", "64", str(video)],
        "making a test video",
    )
    silence = tmp_path / "music.flac"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "2.6667", str(silence)],
        "making silence",
    )
    with pytest.raises(MediaToolError, match="music.flac is silent.*rerun the music stage"):
        normalize_clip(video, silence, 64, tmp_path / "out.mp4", BROADCAST_PROFILE)
