"""What a viewer sees of a stream: an RTMP subscriber that notes the wall-clock arrival and the
timestamp of every packet, reconnecting whenever its connection drops."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field

FRAME_MS = 1000 / 24


@dataclass
class Packet:
    wall: float  # time.monotonic() when it arrived
    video: bool
    dts_ms: int
    connection: int  # which subscriber connection received it


@dataclass
class AirMonitor:
    url: str
    packets: list[Packet] = field(default_factory=list)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _process: subprocess.Popen | None = None

    def __enter__(self) -> AirMonitor:
        self._thread = threading.Thread(target=self._subscribe, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.kill()
        self._thread.join(timeout=10)

    def _subscribe(self) -> None:
        while not self._stop.is_set():
            self.connections += 1
            connection = self.connections
            # framecrc prints one line per packet (stream, dts, ...); -flush_packets makes each
            # line arrive as its packet does. Probing is off: FFmpeg's default 2.5 s of it on
            # each reconnect is the subscriber's own start-up, not time off air.
            self._process = subprocess.Popen(
                [
                    "ffmpeg",
                    "-loglevel",
                    "quiet",
                    "-analyzeduration",
                    "0",
                    "-probesize",
                    "32",
                    "-i",
                    self.url,
                    "-map",
                    "0",
                    "-c",
                    "copy",
                    "-copyts",
                    "-flush_packets",
                    "1",
                    "-f",
                    "framecrc",
                    "-",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for raw in self._process.stdout:
                fields = raw.decode().split(",")
                if raw.startswith(b"#") or len(fields) < 3:
                    continue
                self.packets.append(
                    Packet(time.monotonic(), fields[0].strip() == "0", int(fields[1]), connection)
                )
            self._process.wait()
            self._stop.wait(0.2)

    def wait_for_frames(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.video()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} frames arrived within {timeout} s")
            time.sleep(0.1)

    def video(self, since: float = 0.0) -> list[Packet]:
        return [p for p in list(self.packets) if p.video and p.wall >= since]

    def longest_gap(self, since: float, until: float | None = None) -> float:
        """The longest wall-clock time without a new frame between `since` and `until` (now)."""
        until = time.monotonic() if until is None else until
        times = [since, *(p.wall for p in self.video(since) if p.wall <= until), until]
        return max(b - a for a, b in zip(times, times[1:], strict=False))

    def timestamp_steps(self, since: float = 0.0) -> list[int]:
        """Video DTS steps within each connection, in milliseconds."""
        frames = self.video(since)
        return [
            b.dts_ms - a.dts_ms
            for a, b in zip(frames, frames[1:], strict=False)
            if a.connection == b.connection
        ]

    def steps_over_one_frame(self, since: float = 0.0) -> list[int]:
        # FLV timestamps are whole milliseconds: a frame step is 41 or 42 ms.
        return [step for step in self.timestamp_steps(since) if step > FRAME_MS + 1]
