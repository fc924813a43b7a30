"""What a shot request costs the viewer service, and whether that grows with history.

Runs the viewer service in this process on a Unix socket (as nginx reaches it), on a queue with
no history and on one holding a channel's full history (shot_requests.HISTORY_PER_CHANNEL
decided requests and a busy queue), side by side in the same run: for each, `--requests` POSTs
from distinct viewers (moderated by the demo channel's rules and word list, the queue's bound
refusing what is over it) and guide reads, on 8 threads; prints requests per second and the
median and 99th percentile latency of each. The ratio of the two is the figure: it stays near 1
when nothing a request does grows with the history kept.

Usage: .venv/bin/python benchmarks/request_queue.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.audience.viewer_service import ViewerService, ViewerSite
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, load_channels
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import HISTORY_PER_CHANNEL, RequestQueue
from webtv_dagster.public_site import UnixHTTPConnection


def timed(socket_path: Path, method: str, path: str, body: dict | None, client: str) -> float:
    started = time.perf_counter()
    connection = UnixHTTPConnection(socket_path, timeout=30)
    connection.request(
        method,
        path,
        json.dumps(body) if body else None,
        {"Content-Type": "application/json", "X-Real-IP": client},
    )
    connection.getresponse().read()
    connection.close()
    return time.perf_counter() - started


def fill_history(data_dir: Path, channel) -> None:
    """HISTORY_PER_CHANNEL decided requests, as months of a busy channel leave them."""
    queue = RequestQueue(queue_path(data_dir))
    now = time.time()
    with queue._connection(immediate=True) as db:  # bulk insert: the benchmark's set-up only
        db.executemany(
            "INSERT INTO requests (id, channel, source, client, requester, idea, status, "
            "reason, decided_by, received_at, decided_at, clip_id) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    f"{n:012x}",
                    channel.slug,
                    "web",
                    queue.client_key(f"old{n % 5000}"),
                    "v",
                    f"old idea {n}",
                    "scheduled" if n % 3 else "refused",
                    "r",
                    "auto approval",
                    now - 86_400 + n,
                    now - 86_400 + n,
                    f"{channel.slug}-{n:06d}" if n % 3 else None,
                )
                for n in range(HISTORY_PER_CHANNEL)
            ],
        )


def measure(data_dir: Path, channels, count: int) -> dict[str, list[float]]:
    channel = channels.channels[0]
    socket_path = data_dir / "viewer-service.sock"
    server = ViewerService(socket_path, ViewerSite(None, channels, data_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    latencies: dict[str, list[float]] = {"request": [], "guide": []}
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            jobs = []
            for n in range(count):
                idea = {"idea": f"the llama painting a blue door number {n}", "name": f"v{n}"}
                jobs.append(
                    (
                        "request",
                        pool.submit(
                            timed,
                            socket_path,
                            "POST",
                            f"/api/{channel.slug}/requests",
                            idea,
                            f"10.1.{n // 250}.{n % 250}",
                        ),
                    )
                )
                if n % 10 == 0:
                    jobs.append(
                        (
                            "guide",
                            pool.submit(
                                timed,
                                socket_path,
                                "GET",
                                f"/api/{channel.slug}/guide.json",
                                None,
                                "10.9.9.9",
                            ),
                        )
                    )
            for kind, job in jobs:
                latencies[kind].append(job.result())
    finally:
        server.shutdown()
        server.server_close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    add_plot_argument(parser)
    args = parser.parse_args()
    channels = load_channels(DEFAULT_CHANNELS_FILE)
    results = {}
    for history in (False, True):
        with tempfile.TemporaryDirectory(prefix="webtv-requests-") as scratch:
            data_dir = Path(scratch)
            if history:
                fill_history(data_dir, channels.channels[0])
            started = time.perf_counter()
            latencies = measure(data_dir, channels, args.requests)
            results[history] = (time.perf_counter() - started, latencies)
    figures: dict[str, dict[str, float]] = {}
    for history, (seconds, latencies) in results.items():
        label = f"{HISTORY_PER_CHANNEL} decided in history" if history else "empty history"
        print(f"{label}: {args.requests / seconds:.0f} requests/s")
        figures[label] = {"requests/s": args.requests / seconds}
        for kind, values in latencies.items():
            values = sorted(values)
            p99 = values[int(len(values) * 0.99) - 1]
            print(
                f"  {kind}: median {statistics.median(values) * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms ({len(values)})"
            )
            figures[label][f"{kind} median"] = statistics.median(values) * 1000
            figures[label][f"{kind} p99"] = p99 * 1000
    ratio = results[False][0] / results[True][0]
    print(f"throughput with history / without: {ratio:.2f}")
    if args.plot:
        labels = list(figures)
        kinds = [key for key in next(iter(figures.values())) if key != "requests/s"]
        save_plot(
            args.plot,
            "Shot requests: the viewer service, empty and full history",
            [
                Panel(
                    "throughput",
                    "bar",
                    labels,
                    {"requests/s": [figures[label]["requests/s"] for label in labels]},
                    ylabel="requests/s",
                    value_format="{:.0f}",
                ),
                Panel(
                    "latency",
                    "bar",
                    kinds,
                    {label: [figures[label][kind] for kind in kinds] for label in labels},
                    ylabel="ms",
                    value_format="{:.1f}",
                ),
            ],
            note=f"{args.requests} requests on 8 threads; throughput with history / without: "
            f"{ratio:.2f}",
        )


if __name__ == "__main__":
    main()
