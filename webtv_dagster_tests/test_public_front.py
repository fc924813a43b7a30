"""The public front through real Caddy with a test certificate: the viewer over https for
anyone, the Dagster UI behind a password and closed to what another site's page can make a
browser send."""

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webtv_dagster.stack.public_front import PublicFront, caddyfile, password_hash

from .conftest import free_port_block, wait_for
from .servers import self_signed_certificate
from .test_viewer import channels_on_air  # noqa: F401 (a fixture)

SITE = "webtv.test"
PASSWORD = "a-long-ui-password"


class StandInUi:
    """Stands in for the Dagster UI behind the front: answers 200 and keeps what reached it."""

    def __init__(self):
        self.reached: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                stand_in.reached.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ui")

            do_GET = do_POST = _answer  # noqa: N815 (http.server's naming)

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def front(rtmp_server, tmp_path):
    if shutil.which("caddy") is None:
        pytest.fail("caddy is required (Debian: apt-get install caddy; scripts/test)")
    ui = StandInUi()
    cert, key = self_signed_certificate(tmp_path, SITE)
    public = free_port_block(2)
    config = PublicFront(
        site=SITE,
        viewer_port=rtmp_server.http_port,
        ui_port=ui.port,
        public_viewer_port=public,
        public_ui_port=public + 1,
        certificate=cert,
        key=key,
    )
    caddy_file = tmp_path / "Caddyfile"
    caddy_file.write_text(caddyfile(config, password_hash(PASSWORD)))
    environment = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    log = (tmp_path / "caddy.log").open("w")
    process = subprocess.Popen(
        ["caddy", "run", "--config", str(caddy_file), "--adapter", "caddyfile"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: curl(config, cert, "viewer", "/channels.json")[0] == 200,
            20,
            "caddy serving",
        )
        yield config, cert, ui
    finally:
        process.terminate()
        process.wait(timeout=10)
        ui.server.shutdown()


def curl(config, cert, which, path, *arguments, site=SITE):
    """(status, headers, body) of an https request to one of the front's two sites; status 0
    when no TLS connection could be made."""
    port = config.public_viewer_port if which == "viewer" else config.public_ui_port
    done = subprocess.run(
        ["curl", "-s", "-i", "--max-time", "10", "--cacert", str(cert)]
        + ["--resolve", f"{site}:{port}:127.0.0.1", *arguments, f"https://{site}:{port}{path}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return 0, {}, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_the_viewer_is_served_over_https_with_its_headers(front):
    config, cert, _ = front
    status, headers, body = curl(config, cert, "viewer", "/")
    assert status == 200 and "<html" in body.lower()
    status, headers, body = curl(config, cert, "viewer", "/channels.json")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    assert json.loads(body)[0]["slug"] == "test-llamas"
    # Another name gets no TLS session at all (DNS rebinding finds nothing).
    assert curl(config, cert, "viewer", "/", site="evil.test")[0] == 0


def test_metrics_and_rtmp_statistics_are_not_public_through_the_front(front, tmp_path):
    """Caddy's requests reach nginx from loopback: the stack's metrics and nginx-rtmp's
    statistics still refuse them (they carry X-Forwarded-For), and answer the same requests
    made on the machine."""
    from webtv_dagster.public_site import monitoring_socket
    from webtv_dagster.stack.metrics import StackMetrics, serve_monitoring

    config, cert, _ = front
    metrics = StackMetrics(tmp_path / "data", ["test-llamas"], lambda: [], lambda: {})
    server = serve_monitoring(monitoring_socket(tmp_path / "data"), metrics, lambda: True, "")
    try:
        assert curl(config, cert, "viewer", "/metrics")[0] == 401
        assert curl(config, cert, "viewer", "/rtmp/statistics")[0] == 403
        assert curl(config, cert, "viewer", "/healthz")[0] == 200  # for a load balancer
        local = f"http://127.0.0.1:{config.viewer_port}"
        for path, status in (("/metrics", 200), ("/rtmp/statistics", 200)):
            done = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", local + path],
                capture_output=True,
                text=True,
            )
            assert done.stdout == str(status), path
    finally:
        server.shutdown()


def test_the_ui_needs_its_password_and_refuses_what_other_sites_can_send(front):
    config, cert, ui = front
    login = ["-u", f"{config.ui_user}:{PASSWORD}"]
    assert curl(config, cert, "ui", "/")[0] == 401
    assert curl(config, cert, "ui", "/", "-u", f"{config.ui_user}:wrong-password")[0] == 401
    assert ui.reached == []
    assert curl(config, cert, "ui", "/", *login)[0] == 200
    # An <img> or a link: GraphQL over GET.
    mutation = "/graphql?query=mutation%7BlaunchRun%7D"
    assert curl(config, cert, "ui", mutation, *login)[0] == 405
    # A form posted from another site.
    form = ["-X", "POST", "-H", "Content-Type: application/x-www-form-urlencoded", "-d", "q=1"]
    assert curl(config, cert, "ui", "/graphql", *login, *form)[0] == 415
    # A WebSocket opened from another site's page (as browsers do, over HTTP/1.1).
    socket = ["--http1.1", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket"]
    foreign = ["-H", "Origin: https://evil.test"]
    assert curl(config, cert, "ui", "/graphql", *login, *socket, *foreign)[0] == 403
    assert ui.reached == ["GET /"]
    # Anything else a page of another site sends.
    assert curl(config, cert, "ui", "/", *login, *foreign)[0] == 403
    # The UI's own requests pass.
    json_post = ["-X", "POST", "-H", "Content-Type: application/json", "-d", "{}"]
    assert curl(config, cert, "ui", "/graphql", *login, *json_post)[0] == 200
    assert ui.reached == ["GET /", "POST /graphql"]


def test_webtv_caddyfile_writes_the_front_without_the_password(tmp_path):
    import sys

    output = tmp_path / "Caddyfile"
    done = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", "caddyfile", str(output), "--site", SITE],
        env={**os.environ, "WEBTV_UI_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    written = output.read_text()
    assert f"https://{SITE}:443" in written and f"https://{SITE}:8443" in written
    assert "basicauth" in written and "$2a$" in written
    assert PASSWORD not in written + done.stdout + done.stderr
    validated = subprocess.run(
        ["caddy", "validate", "--config", str(output), "--adapter", "caddyfile"],
        env={**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


@pytest.mark.usefixtures("channels_on_air")
def test_a_browser_plays_the_channel_over_https_through_the_front(front):
    """Chromium on the public address, as a viewer on the internet: the page, hls.js and every
    playlist and fragment through Caddy over TLS (its certificate checked against the test
    authority, not ignored), and the video plays on."""
    from playwright.sync_api import sync_playwright

    from .test_viewer import CHROMIUM, CHROMIUM_FLAGS, SAMPLE

    config, cert, _ = front
    # Chromium trusts the test certificate by its public key's hash; the site's name resolves
    # to this machine.
    spki = subprocess.run(
        f"openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der"
        " | openssl dgst -sha256 -binary | base64",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    flags = [
        *CHROMIUM_FLAGS,
        f"--host-resolver-rules=MAP {SITE} 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={spki}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            page = browser.new_page()
            page.goto(f"https://{SITE}:{config.public_viewer_port}/#test-llamas")
            wait_for(lambda: page.evaluate(SAMPLE)["currentTime"] > 1, 90, "the video playing")
            first = page.evaluate(SAMPLE)
            time.sleep(4)
            later = page.evaluate(SAMPLE)
            assert later["player"] == "hls.js"
            assert later["currentTime"] - first["currentTime"] > 2  # live, not stalled
            assert page.evaluate("location.protocol") == "https:"
        finally:
            browser.close()
