"""How long the stack's /metrics takes to answer (stack/metrics.py, as the watchdog serves it),
with --channels channels, each with a full playout state (a schedule of clips aired and
queued, a guide, skips) and its progress file, and the request database at the most the
queue keeps (HISTORY_PER_CHANNEL decided requests per channel over the 30 days it keeps them:
its bound). The answer is timed from a client on the socket, as nginx asks; the median and the
99th percentile of --scrapes scrapes are printed. Target: under 100 ms with 20 channels.

Usage: .venv/bin/python benchmarks/metrics_latency.py [--channels 20] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from webtv_dagster.playout.state import (
    GuideEntry,
    PlayoutFolder,
    PlayoutState,
    ScheduledClip,
    SkippedClip,
    write_state,
)
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import (
    HISTORY_PER_CHANNEL,
    HISTORY_SECONDS,
    RequestQueue,
)
from webtv_dagster.public_site import UnixHTTPConnection
from webtv_dagster.stack.metrics import StackMetrics, serve_monitoring


def channel_state(slug: str, now: float) -> PlayoutState:
    schedule = [
        ScheduledClip(
            clip_id=f"{slug}-{n:06d}",
            prompt="a llama baking bread, slow dolly in, golden hour " * 3,
            duration_seconds=8.0,
            starts_at=now - 80 + 8 * n,
            stream_seconds=8.0 * n,
        )
        for n in range(1, 16)
    ]
    return PlayoutState(
        channel=slug,
        title=slug.title(),
        publisher_started_at=now - 3600,
        updated_at=now,
        aired_through=15,
        unplayed_seconds=120.0,
        schedule=schedule,
        up_next=[
            GuideEntry(clip_id=f"{slug}-{n:06d}", prompt="a llama", duration_seconds=8.0)
            for n in range(16, 26)
        ],
        skipped=[
            SkippedClip(clip_id=f"{slug}-{n:06d}", reason="unreadable", at=now - n)
            for n in range(1, 11)
        ],
        publisher_restarts=3,
        clips_skipped=10,
    )


def fill(data_dir: Path, slugs: list[str]) -> None:
    now = time.time()
    spacing = HISTORY_SECONDS / HISTORY_PER_CHANNEL  # the decisions kept, over the 30 days kept
    for slug in slugs:
        PlayoutFolder.of(data_dir, slug).path.mkdir(parents=True)
        write_state(data_dir, channel_state(slug, now))
        PlayoutFolder.of(data_dir, slug).progress.write_text("0")
    RequestQueue(queue_path(data_dir))  # its schema
    db = sqlite3.connect(queue_path(data_dir))
    with db:
        for slug in slugs:
            db.executemany(
                "INSERT INTO requests (id, channel, source, client, requester, idea, status, "
                "reason, decided_by, received_at, decided_at) "
                "VALUES (?, ?, 'web', 'c', 'Ann', 'a llama', ?, '', 'word list', ?, ?)",
                (
                    (f"{slug}-{n}", slug, ("scheduled", "refused")[n % 2], when, when)
                    for n in range(HISTORY_PER_CHANNEL)
                    for when in [now - n * spacing]
                ),
            )
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    slugs = [f"channel-{n}" for n in range(args.channels)]
    processes = [
        {"group": "playouts", "name": f"playout_{slug}", "statename": "RUNNING", "pid": 100 + n}
        for n, slug in enumerate(slugs)
    ]
    with tempfile.TemporaryDirectory(prefix="webtv-metrics-") as scratch:
        data_dir = Path(scratch) / "data"
        fill(data_dir, slugs)
        rows = args.channels * HISTORY_PER_CHANNEL
        metrics = StackMetrics(data_dir, slugs, lambda: processes, lambda: {})
        path = Path(scratch) / "monitoring.sock"
        server = serve_monitoring(path, metrics, lambda: True, "")
        timings, size = [], 0
        try:
            for _ in range(args.scrapes):
                started = time.perf_counter()
                connection = UnixHTTPConnection(path)
                connection.request("GET", "/metrics", headers={"X-Real-IP": "127.0.0.1"})
                body = connection.getresponse().read()
                timings.append((time.perf_counter() - started) * 1000)
                connection.close()
                size = len(body)
        finally:
            server.shutdown()
    timings.sort()
    p99 = timings[min(len(timings) - 1, round(len(timings) * 0.99))]
    print(
        f"{args.channels} channels, {rows:,} requests kept, {size:,} bytes an answer: "
        f"median {statistics.median(timings):.1f} ms, p99 {p99:.1f} ms, "
        f"max {timings[-1]:.1f} ms over {args.scrapes} scrapes"
    )


if __name__ == "__main__":
    main()
