"""Gapless stream-copy playout through a real nginx-rtmp, checked by an FFmpeg subscriber."""

import json
import subprocess
import time

import pytest

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.playout.publisher import Publisher

FRAME = 1 / BROADCAST_PROFILE.fps


@pytest.fixture(scope="module")
def broadcast_clips(tmp_path_factory):
    """Three broadcast clips of 64 frames, each with its own picture and tone."""
    folder = tmp_path_factory.mktemp("clips")
    made = []
    for index, (source, tone) in enumerate([("testsrc2", 440), ("smptebars", 660),
                                            ("mandelbrot", 550)]):  # fmt: skip
        video, music = folder / f"v{index}.mp4", folder / f"m{index}.flac"
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"{source}=s=1024x576:r=24",
                "-frames:v",
                "64",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                str(video),
            ],
            "test video",
        )
        run_ffmpeg(["-f", "lavfi", "-i", f"sine=f={tone}:r=48000", "-t", "2.6667", "-ac", "2",
                    str(music)], "test tone")  # fmt: skip
        clip = folder / f"clip{index}.mp4"
        normalize_clip(video, music, 64, clip, BROADCAST_PROFILE)
        made.append(clip)
    return made


def packet_times(recording, kind):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0" if kind == "video" else "a:0",
         "-show_entries", "packet=dts_time", "-of", "json", str(recording)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [float(p["dts_time"]) for p in json.loads(out)["packets"] if "dts_time" in p]


def test_clips_join_without_gaps_and_a_clip_appended_mid_stream_airs(
    rtmp_server, broadcast_clips, tmp_path
):
    url = rtmp_server.publish_url("test-llamas")
    recording = tmp_path / "air.flv"
    seconds = 7 * 64 / 24
    subscriber = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", url, "-c", "copy",
         "-t", f"{seconds - 1.5:.3f}", str(recording)],
    )  # fmt: skip
    time.sleep(0.5)
    publisher = Publisher([url], tmp_path / "publisher.log")
    pid = publisher.process.pid
    for index in range(6):
        publisher.air(broadcast_clips[index % 2])
    time.sleep(2)  # the stream is live; a new clip arrives only now
    publisher.air(broadcast_clips[2])
    subscriber.wait(timeout=60)
    publisher.close()
    assert publisher.process.pid == pid and publisher.aired_seconds == pytest.approx(seconds)

    video = packet_times(recording, "video")
    audio = packet_times(recording, "audio")
    video_steps = [b - a for a, b in zip(video, video[1:], strict=False)]
    audio_steps = [b - a for a, b in zip(audio, audio[1:], strict=False)]
    # Six clip boundaries went by, each one frame apart, audio never going back.
    assert video[-1] - video[0] > seconds - 2.5
    assert max(video_steps) <= FRAME + 0.002
    assert min(video_steps) > 0
    assert min(audio_steps) > 0
    warnings = (tmp_path / "publisher.log").read_text()
    assert "Non-monotonous" not in warnings and "corrupt" not in warnings.lower()
