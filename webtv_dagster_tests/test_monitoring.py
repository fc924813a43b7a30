"""The stack's monitoring endpoints (stack/metrics.py) on their socket, as nginx reaches them:
who may read /metrics, and what /readyz says of channels on air, off air and stopped. The whole
stack scraped by a real Prometheus is in test_whole_stack.py."""

import json
import os
import time

import pytest

from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.public_site import UnixHTTPConnection
from webtv_dagster.stack.metrics import StackMetrics, serve_monitoring

TOKEN = "an-operator-token-long-enough-1234"
PROCESSES = [
    {"group": "rtmp", "name": "rtmp", "statename": "RUNNING", "pid": 10},
    {"group": "playout_a", "name": "playout_a", "statename": "BACKOFF", "pid": 0},
]


def get(path, route: str, **headers: str) -> tuple[int, bytes]:
    connection = UnixHTTPConnection(path, timeout=5)
    connection.request("GET", route, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read()


@pytest.fixture
def served(tmp_path):
    data_dir = tmp_path / "data"
    metrics = StackMetrics(data_dir, ["a", "b"], lambda: PROCESSES, lambda: {"rtmp": 2})
    path = tmp_path / "monitoring.sock"
    server = serve_monitoring(path, metrics, lambda: True, TOKEN)
    yield data_dir, path
    server.shutdown()


def on_air(data_dir, slug: str, seconds_ago: float = 0.0) -> None:
    progress = PlayoutFolder.of(data_dir, slug).progress
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text("0")
    when = time.time() - seconds_ago
    os.utime(progress, (when, when))


def test_metrics_are_for_loopback_clients_or_the_operator_token(served):
    _, path = served
    status, body = get(path, "/metrics", **{"X-Real-IP": "127.0.0.1"})
    assert status == 200
    text = body.decode()
    assert 'webtv_process_up{program="rtmp"} 1.0' in text
    assert 'webtv_process_state{program="playout_a",state="BACKOFF"} 1.0' in text
    assert 'webtv_process_restarts_total{program="rtmp"} 2.0' in text
    assert 'webtv_channel_on_air{channel="a"} 0.0' in text
    assert 'webtv_channel_requests{channel="b",status="pending"} 0.0' in text
    # From outside (nginx says who), only with the token; the token is never in the answer.
    outside = {"X-Real-IP": "203.0.113.5"}
    assert get(path, "/metrics", **outside)[0] == 401
    assert get(path, "/metrics", **outside, Authorization="Bearer wrong-token")[0] == 401
    status, body = get(path, "/metrics", **outside, Authorization=f"Bearer {TOKEN}")
    assert status == 200 and TOKEN.encode() not in body
    assert get(path, "/metrics", Authorization=f"Bearer {TOKEN}x")[0] == 401  # no address
    # Through a reverse proxy on this machine (Caddy): loopback, but marked, so not local.
    proxied = {"X-Real-IP": "127.0.0.1", "X-Forwarded-For": "203.0.113.5"}
    assert get(path, "/metrics", **proxied)[0] == 401
    assert get(path, "/nothing")[0] == 404


def test_readiness_names_the_channels_off_air_and_leaves_stopped_ones_out(served):
    data_dir, path = served
    assert get(path, "/healthz")[0] == 200
    status, body = get(path, "/readyz")
    assert (status, json.loads(body)) == (503, {"ready": False, "off_air": ["a", "b"]})
    on_air(data_dir, "a")
    on_air(data_dir, "b", seconds_ago=10)  # its publisher stopped reporting: off air
    status, body = get(path, "/readyz")
    assert (status, json.loads(body)) == (503, {"ready": False, "off_air": ["b"]})
    text = get(path, "/metrics", **{"X-Real-IP": "::1"})[1].decode()
    assert 'webtv_channel_on_air{channel="a"} 1.0' in text
    since = float(text.split('webtv_channel_seconds_since_last_frame{channel="b"} ')[1].split()[0])
    assert 9.5 < since < 30
    # An operator's stop is not a failure: the stack is ready without that channel.
    PlayoutFolder.of(data_dir, "b").stopped_marker.write_text("")
    status, body = get(path, "/readyz")
    assert (status, json.loads(body)) == (200, {"ready": True, "off_air": []})


def test_webtv_monitoring_serves_without_webtv_up_behind_nginx(rtmp_server, tmp_path):
    """Under systemd units or in a Kubernetes pod no watchdog of `webtv up` runs: `webtv
    monitoring` serves the same routes through the viewer's nginx."""
    import subprocess
    import urllib.error
    import urllib.request

    from webtv_dagster.stack.programs import webtv_command

    from .conftest import TEST_CHANNELS, wait_for

    data_dir = rtmp_server.root.parent / "data"  # what the fixture's nginx proxies to
    environment = {
        **os.environ,
        "WEBTV_DATA_DIR": str(data_dir),
        "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS),
        "WEBTV_HLS_PORT": str(rtmp_server.http_port),
    }
    monitoring = subprocess.Popen(webtv_command("monitoring"), env=environment)
    site = f"http://127.0.0.1:{rtmp_server.http_port}"

    def fetch(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(site + path, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    try:
        assert wait_for(lambda: fetch("/healthz")[0] == 200, 30, "/healthz answering")
        status, body = fetch("/readyz")  # nothing airs here
        assert status == 503 and "test-llamas" in body
        status, text = fetch("/metrics")
        assert status == 200 and 'webtv_channel_on_air{channel="test-llamas"} 0.0' in text
        assert "webtv_process_up{" not in text  # no supervisor, nor --systemd
    finally:
        monitoring.terminate()
        assert monitoring.wait(timeout=10) == 0
