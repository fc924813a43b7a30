"""The one profile every aired clip is normalized to, so that clips join by stream copy."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict


class BroadcastProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int = 1024
    height: int = 576
    fps: int = 24
    keyframe_interval: int = 24  # a keyframe a second: a clip taken down is cut within one
    video_codec: str = "h264"
    pix_fmt: str = "yuv420p"
    audio_codec: str = "aac"
    sample_rate: int = 48_000
    channels: int = 2
    audio_bitrate: str = "160k"
    loudness_lufs: float = -16.0
    true_peak_db: float = -1.5
    loudness_range: float = 11.0

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def keyframes_fit(self, keyframe_times: list[float], seconds: float) -> bool:
        """Whether a video `seconds` long has its keyframes where the profile puts them: every
        keyframe interval from 0, and nowhere else (what stream-copy playout cuts on)."""
        interval = self.keyframe_interval / self.fps
        wanted = [index * interval for index in range(math.ceil(seconds / interval - 1e-6))]
        return len(keyframe_times) == len(wanted) and all(
            abs(got - want) <= 0.002 for got, want in zip(keyframe_times, wanted, strict=True)
        )

    @property
    def aligned_clip_seconds(self) -> float:
        # 64 frames at 24 fps = 128 000 samples = exactly 125 AAC frames of 1024 samples.
        return 64 / self.fps


BROADCAST_PROFILE = BroadcastProfile()
