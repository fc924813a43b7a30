"""Small previews an operator sees in the Dagster UI without downloading the media: a contact
sheet of a video's frames (JPEG) or an audio track's waveform (PNG), as bytes.

Each costs one FFmpeg process on one thread, decoding as little as it can.
"""

from __future__ import annotations

from pathlib import Path

from webtv_dagster.media.ffmpeg import VideoStreamInfo, run_ffmpeg

CONTACT_SHEET_FRAMES = 4
THUMB_WIDTH = 192


def contact_sheet_jpeg(video: Path, stream: VideoStreamInfo) -> bytes:
    """A strip of frames spread evenly over the clip, as JPEG bytes. `stream` is the video's
    probe; with its keyframe times (`probe(video, keyframes=True)`) no other probe is needed.

    When the clip has enough keyframes (broadcast clips have one every 2 s), only those are
    decoded; otherwise the frames up to the last tile, less those no other frame refers to.
    """
    tiles = f"scale={THUMB_WIDTH}:-2,tile={CONTACT_SHEET_FRAMES}x1"
    keyframes = stream.keyframe_times or []
    if len(keyframes) >= CONTACT_SHEET_FRAMES:
        step = len(keyframes) / CONTACT_SHEET_FRAMES
        picks = "+".join(f"eq(n,{int(i * step)})" for i in range(CONTACT_SHEET_FRAMES))
        decode = ["-skip_frame", "nokey", "-i", str(video), "-vf", f"select='{picks}',{tiles}"]
    else:
        every = max(stream.duration, 0.04) / CONTACT_SHEET_FRAMES
        # Non-reference frames are skipped: no other frame needs them, and one near each
        # tile's time is as good a preview.
        decode = ["-skip_frame", "noref", "-i", str(video), "-vf", f"fps={1 / every:.6f},{tiles}"]
    return run_ffmpeg(
        [
            "-threads",
            "1",
            *decode,
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-q:v",
            "5",
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "pipe:1",
        ],
        f"making a contact sheet of {video.name}",
    )


def waveform_png(audio: Path) -> bytes:
    return run_ffmpeg(
        [
            "-threads",
            "1",
            "-i",
            str(audio),
            "-filter_complex",
            "showwavespic=s=768x96:split_channels=1:colors=0x4da3ff|0xff9f43",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "pipe:1",
        ],
        f"drawing the waveform of {audio.name}",
    )
