"""One long-lived FFmpeg publisher per channel, fed clip after clip by stream copy.

Each clip is remuxed (no re-encoding) into MPEG-TS with its timestamps shifted to where the
previous clip ended, and written into the publisher's input; the publisher paces the stream to
real time (`-re`) and copies it to FLV over RTMP. Because every broadcast clip has exactly
64-frame-aligned video and audio of the same length, the timeline stays continuous: video DTS
steps by one frame and audio DTS never goes back at clip boundaries. Two details make that so:
each clip's AAC priming packet (negative timestamp) is dropped, and the timeline starts at
TIMELINE_START rather than 0 so that no clip's B-frame delay pushes a DTS below zero (the TS
muxer would then shift that clip alone).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

from webtv_dagster.media.ffmpeg import MediaToolError

TIMELINE_START = 10.0


def remux_to_ts(clip: Path, offset: float) -> list[str]:
    """The ffmpeg command that writes `clip` as MPEG-TS to stdout, starting at `offset` s."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(clip),
        "-map", "0:v:0", "-map", "0:a:0", "-c", "copy",
        "-bsf:v", "h264_mp4toannexb", "-bsf:a", r"noise=drop=lt(pts\,0)",
        "-muxdelay", "0", "-muxpreload", "0", "-avoid_negative_ts", "disabled",
        "-output_ts_offset", f"{offset:.6f}", "-mpegts_flags", "+initial_discontinuity",
        "-f", "mpegts", "pipe:1",
    ]  # fmt: skip


def flv_outputs(urls: list[str]) -> list[str]:
    """FFmpeg output arguments: the first URL is the main output, the others mirrors whose
    failure never stops the main one (tee with onfail=ignore)."""
    if len(urls) == 1:
        return ["-f", "flv", urls[0]]
    targets = [f"[f=flv]{urls[0]}", *(f"[f=flv:onfail=ignore]{url}" for url in urls[1:])]
    # tee does not translate codec tags as a plain flv output does: give FLV's own
    # (7: H.264, 10: AAC).
    return ["-map", "0", "-tag:v", "7", "-tag:a", "10", "-f", "tee", "|".join(targets)]


class Publisher:
    """An FFmpeg process that stays connected to its outputs while clips are appended."""

    def __init__(self, urls: list[str], log_path: Path):
        self.url = urls[0]
        self.log_path = log_path
        self.offset = TIMELINE_START
        self.aired_seconds = 0.0
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
             "-f", "mpegts", "-i", "pipe:0", "-c", "copy", *flv_outputs(urls)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        # FFmpeg names its outputs in errors: the log gets its lines with stream keys masked.
        keys = [url.rsplit("/", 1)[-1] for url in urls[1:]]  # mirrors carry stream keys
        self._logger = threading.Thread(
            target=_copy_masked, args=(self.process.stderr, log_path, keys), daemon=True
        )
        self._logger.start()

    def air(self, clip: Path, frames: int, fps: int) -> float:
        """Appends `clip` (`frames` frames at `fps`) to the stream; returns once it is queued
        (the pipe paces this to real time), with the clip's duration.

        The caller knows the length from the broadcast record: counting frames from the
        container (rounded to the millisecond) would let the timeline drift."""
        duration = frames / fps
        remux = subprocess.run(remux_to_ts(clip, self.offset), capture_output=True, check=False)
        if remux.returncode != 0:
            raise MediaToolError(
                f"cannot remux {clip.name} for air: {remux.stderr.decode(errors='replace')[-300:]}"
            )
        with self._lock:
            try:
                if self.process.poll() is not None:
                    raise BrokenPipeError
                self.process.stdin.write(remux.stdout)
                self.process.stdin.flush()
            except BrokenPipeError:
                raise ConnectionError(self._exit_reason()) from None
            self.offset += duration
            self.aired_seconds += duration
        return duration

    def _exit_reason(self) -> str:
        self.process.wait()
        self._logger.join(timeout=5)
        last = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
        # The last path segment of an RTMP URL is the stream key: never show it.
        where = self.url.rsplit("/", 1)[0]
        return f"the publisher to {where}/<stream key> exited ({' '.join(last) or 'no message'})"

    def close(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # the publisher died with data unsent
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._logger.join(timeout=5)


def _copy_masked(stream, log_path: Path, secrets: list[str]) -> None:
    with log_path.open("a", encoding="utf-8") as log:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace")
            for secret in secrets:
                line = line.replace(secret, "<stream key>")
            log.write(line)
            log.flush()
