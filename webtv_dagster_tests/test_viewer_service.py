"""Shot requests, the guide and the dump button through the viewer's real nginx and the real
`webtv viewer-service` process: floods from one viewer and from many, a service killed in the
middle of a flood, wrong operator tokens."""

import collections
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from webtv_dagster.playout.takedowns import read_takedowns
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import RequestQueue
from webtv_dagster.public_site import viewer_service_socket
from webtv_dagster.stack.processes import wait_until_serving
from webtv_dagster.stack.programs import webtv_command

from .conftest import ACCESS_KEY, SECRET_KEY, TEST_CHANNELS, free_port_block, wait_for
from .test_previews import UnixHTTPConnection

SLUG = "test-llamas"
OPERATOR_TOKEN = "OPERATOR-SECRET-4711"


def requests_channels_file(path, **policy):
    raw = yaml.safe_load(TEST_CHANNELS.read_text())
    raw["channels"][0]["requests"] = {
        "enabled": True,
        "approval": "auto",
        "share": 1.0,
        "blocked_words": ["broccoli"],
        **policy,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


class ViewerServiceProcess:
    """`webtv viewer-service` as supervisord runs it, on the data folder nginx proxies to."""

    def __init__(self, data_dir, channels_file, store):
        self.data_dir = data_dir
        self.channels_file = channels_file
        self.socket = viewer_service_socket(data_dir)
        self.log = data_dir.parent / "viewer-service.log"
        self.environment = {
            **os.environ,
            "WEBTV_DATA_DIR": str(data_dir),
            "WEBTV_CHANNELS_FILE": str(channels_file),
            "WEBTV_S3_ENDPOINT_URL": store.endpoint,
            "WEBTV_S3_BUCKET": store.bucket,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "WEBTV_OPERATOR_TOKEN": OPERATOR_TOKEN,
        }
        self.process = None

    def start(self):
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                webtv_command("viewer-service"),
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_until_serving(self.socket, timeout=30), self.log.read_text()
        return self

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


@pytest.fixture
def service(rtmp_server, media_store, tmp_path):
    # The rtmp_server fixture's nginx proxies to the data folder tmp_path / "data".
    data_dir = rtmp_server.root.parent / "data"
    channels_file = requests_channels_file(tmp_path / "channels.yaml", per_client=3, max_queue=600)
    service = ViewerServiceProcess(data_dir, channels_file, media_store).start()
    yield service
    service.stop()


def call(url, body=None, headers=None):
    """(status, JSON answer) of a request to nginx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            return error.code, json.loads(payload)
        except ValueError:
            return error.code, {"nginx": payload.decode(errors="replace")}


def on_socket(socket_path, body, client):
    """(status, JSON answer) of a request sent as nginx sends it, for client address `client`."""
    connection = UnixHTTPConnection(socket_path)
    connection.request(
        "POST",
        f"/api/{SLUG}/requests",
        json.dumps(body),
        {"Content-Type": "application/json", "X-Real-IP": client},
    )
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


def test_requests_are_answered_in_words_and_listed_in_the_guide(service, rtmp_server):
    base = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}"
    asked_at = time.time()
    status, answer = call(f"{base}/requests", {"idea": "the llama juggling lemons", "name": "Ann"})
    assert status == 202 and answer["accepted"] and "in the queue" in answer["message"]
    status, refused = call(f"{base}/requests", {"idea": "a llama eating BROCCOLI", "name": "Bo"})
    assert status == 422 and "broccoli" in refused["message"]
    status, mine = call(f"{base}/requests/{answer['request_id']}")
    assert status == 200 and mine["status"] == "approved" and mine["requested_by"] == "Ann"
    assert call(f"{base}/requests/{refused['request_id']}")[1]["message"].startswith("not this")
    status, guide = call(f"{base}/guide.json")
    assert status == 200 and guide["takes_requests"]
    (queued,) = guide["requests"]
    # Nothing is on air or made: it airs as soon as its clip is made.
    assert queued["idea"] == "the llama juggling lemons" and queued["expected_at"] >= asked_at
    assert "client" not in json.dumps(guide)
    # Junk is refused with a reason, never a crash.
    for junk in (["not", "an", "object"], {"idea": 42}, {"name": "no idea"}):
        assert call(f"{base}/requests", junk)[0] == 400
    status, big = call(f"{base}/requests", {"idea": "x" * 9000})
    assert status == 413
    assert call(f"http://127.0.0.1:{rtmp_server.http_port}/api/nope/guide.json")[0] == 404


def test_a_page_of_another_site_cannot_post_for_its_visitors(service, rtmp_server):
    """A cross-site form or text/plain post needs no permission from the browser: only JSON is
    taken, and never from a page whose Origin is another site (through nginx, as browsers
    reach it)."""
    host = f"127.0.0.1:{rtmp_server.http_port}"
    url = f"http://{host}/api/{SLUG}/requests"
    idea = json.dumps({"idea": "the llama juggling pears", "name": "Ann"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        request = urllib.request.Request(url, data=idea, headers={"Content-Type": content_type})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 415
    status, answer = call(
        url, {"idea": "the llama juggling pears"}, {"Origin": "https://evil.test"}
    )
    assert (status, answer["error"]) == (403, "requests from pages of other sites are refused")
    # The channel's own page (same origin) is heard.
    status, _ = call(url, {"idea": "the llama juggling pears"}, {"Origin": f"http://{host}"})
    assert status == 202


def test_a_flood_from_one_viewer_and_from_many_keeps_the_queue_bounded_and_answering(
    service, rtmp_server
):
    base = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}"
    statuses, guide_seconds = [], []
    started = time.monotonic()

    def one_viewer(n):
        return call(f"{base}/requests", {"idea": f"the llama painting fence {n}", "name": "F"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        flood = [pool.submit(one_viewer, n) for n in range(1000)]
        while not all(f.done() for f in flood):
            asked = time.monotonic()
            assert call(f"{base}/guide.json")[0] == 200  # polls are not rate-limited
            guide_seconds.append(time.monotonic() - asked)
            time.sleep(0.2)
        statuses = [f.result()[0] for f in flood]
    flood_seconds = time.monotonic() - started
    assert flood_seconds < 30, f"1000 requests took {flood_seconds:.1f} s"
    # One address: nginx lets a few a second through, the queue's per-viewer rate takes three.
    counted = collections.Counter(statuses)
    assert counted == {202: 3, 429: 997}, counted
    assert max(guide_seconds) < 2.0, f"the guide took {max(guide_seconds):.2f} s in the flood"

    # Many viewers (sent as nginx sends them, each with its own address), and the service
    # killed for real in the middle: every request it said it took is still queued after.
    accepted = []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = []
        for n in range(1000):
            if n == 200:
                service.kill()
                service.start()
            idea = {"idea": f"the llama sailing boat {n}", "name": f"v{n}"}
            client = f"10.0.{n // 250}.{n % 250}"
            futures.append(pool.submit(on_socket_retrying, service.socket, idea, client))
        for future in concurrent.futures.as_completed(futures):
            status, answer = future.result()
            if status == 202:
                accepted.append(answer["request_id"])
            else:
                assert status == 429 and answer["status"] == "queue_full", answer
    queue = RequestQueue(queue_path(service.data_dir))
    waiting = {r.id for r in queue.listed(SLUG, ["approved", "pending"], 1000)}
    # The bound holds (a request cut off by the kill and sent again may hold a slot too).
    assert len(waiting) == 600 and set(accepted) <= waiting and len(accepted) >= 590


def on_socket_retrying(socket_path, body, client):
    """A viewer's browser retries when the service is down for a moment (killed, restarting)."""
    for _ in range(100):
        try:
            return on_socket(socket_path, body, client)
        except (OSError, http.client.HTTPException):  # refused, reset, or cut off mid-answer
            time.sleep(0.1)
    raise AssertionError("the viewer service did not come back")


def test_the_dump_button_needs_the_operator_token_and_takes_the_clip_down(
    service, rtmp_server, media_store
):
    dump = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}/dump"
    clip = {"clip_id": f"{SLUG}-000007", "reason": "a viewer complained"}
    assert call(dump, clip)[0] == 401
    assert call(dump, clip, {"Authorization": "Bearer wrong-token"})[0] == 401
    assert (
        call(dump, {"clip_id": "test-ocean-000001"}, {"Authorization": f"Bearer {OPERATOR_TOKEN}"})[
            0
        ]
        == 400
    )
    status, answer = call(dump, clip, {"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert status == 200 and answer["taken_down"] == f"{SLUG}-000007"
    takedown = read_takedowns(media_store, SLUG).clips[f"{SLUG}-000007"]
    assert takedown.reason == "dumped from the viewer: a viewer complained"
    service.stop()
    logs = [service.log, *rtmp_server.root.glob("*.log")]
    said = "".join(path.read_text(errors="replace") for path in logs)
    assert OPERATOR_TOKEN not in said and "wrong-token" not in said
    service.start()  # the fixture stops it


def test_operator_token_guesses_are_logged_held_back_and_alerted(service, receiver):
    """A guesser at the socket's pace (1,700 tries a second) once went unseen: each wrong token
    is logged with its client, a client past 5 in a minute is refused even the right one, and
    the stack's watchdog alerts once guessers from several addresses sent 20."""
    from pydantic import SecretStr

    from webtv_dagster.settings import Settings
    from webtv_dagster.stack.watchdog import Watchdog

    url, alerts = receiver
    settings = Settings.from_env().model_copy(
        update={"data_dir": service.data_dir, "alert_webhook_url": SecretStr(url)}
    )
    watchdog = Watchdog(settings, None, "127.0.0.1:1", service.data_dir)
    watchdog.look_at_token_guesses()  # what it finds at its start is no news

    def dump(token, client):
        connection = UnixHTTPConnection(service.socket)
        connection.request(
            "POST",
            f"/api/{SLUG}/dump",
            json.dumps({"clip_id": f"{SLUG}-000003"}),
            {"Content-Type": "application/json", "X-Real-IP": client, "Authorization": token},
        )
        status = connection.getresponse().status
        connection.close()
        return status

    guesses = [dump(f"Bearer guess-{n}", "10.0.0.9") for n in range(8)]
    assert guesses == [401] * 5 + [429] * 3
    assert dump(f"Bearer {OPERATOR_TOKEN}", "10.0.0.9") == 429
    # Another client is not held back by this one's guesses.
    assert dump(f"Bearer {OPERATOR_TOKEN}", "10.0.0.10") == 200
    service.stop()
    said = service.log.read_text(errors="replace")
    assert "wrong operator token from 10.0.0.9 (5 in the last minute)" in said
    assert "guess-" not in said and OPERATOR_TOKEN not in said
    service.start()  # the fixture stops it
    watchdog.look_at_token_guesses()
    assert alerts == []  # 5 wrong tokens: an operator may mistype
    for client in range(3):  # guessers from three more addresses, held to 5 a minute each
        assert {dump(f"Bearer guess-{n}", f"10.0.1.{client}") for n in range(6)} == {401, 429}
    watchdog.look_at_token_guesses()
    watchdog.look_at_token_guesses()  # once a window
    wait_for(lambda: alerts, 10, "the alert")
    time.sleep(0.5)
    (alert,) = alerts
    assert alert["title"] == "the operator token is being guessed"
    assert "20 wrong operator tokens" in alert["text"] and OPERATOR_TOKEN not in alert["text"]


def test_a_clip_id_of_thousands_of_digits_is_no_clip_and_no_traceback(service, rtmp_server):
    base = f"http://127.0.0.1:{rtmp_server.http_port}"
    huge = f"{SLUG}-1{'0' * 5000}"
    status, _ = call(f"{base}/previews/{SLUG}/{huge}/raw.preview.jpg")
    assert status == 404
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    long = f"{SLUG}-1{'0' * 600}"  # what fits in a dump's body
    status, answer = call(f"{base}/api/{SLUG}/dump", {"clip_id": long}, operator)
    assert status == 400 and "is not a clip id" in answer["error"] and len(answer["error"]) < 200
    service.stop()
    assert "Traceback" not in service.log.read_text(errors="replace")
    service.start()  # the fixture stops it


def test_stalled_connections_are_closed_and_hold_no_threads(service):
    """Clients that connect and send nothing (300 once held 300 threads for good): the service
    answers others meanwhile, holds no thread for them, and closes each after its timeout."""
    import socket

    def threads() -> int:
        status = Path(f"/proc/{service.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Threads:"))[8:])

    before = threads()
    stalled = []
    for _ in range(300):
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(service.socket))
        stalled.append(client)
    assert on_socket(service.socket, {"idea": "the llama rowing"}, "10.0.0.1")[0] == 202
    assert threads() <= before + 2  # a request's worker thread, at most
    opened = time.monotonic()
    for client in stalled:
        client.settimeout(30)
        assert client.recv(1) == b""  # closed by the service
        client.close()
    assert 5 < time.monotonic() - opened < 20


def test_only_nginx_can_reach_the_service_socket(service, rtmp_server):
    """Whoever connects to the socket names the viewer (X-Real-IP): it was world-writable, so
    any local account could pass the per-viewer limits. Now only nginx's workers' group (as
    root: `nobody`'s) or our own account may; nginx still serves through it."""
    import grp
    import os
    import socket
    import subprocess

    info = service.socket.stat()
    if os.geteuid() != 0:
        assert info.st_mode & 0o777 == 0o600
        return
    assert info.st_mode & 0o777 == 0o660
    assert grp.getgrgid(info.st_gid).gr_name == grp.getgrgid(65534).gr_name  # nobody's group
    assert all(os.stat(folder).st_mode & 0o001 for folder in service.socket.parents)
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect({str(service.socket)!r})"
    other = subprocess.run(["/usr/bin/python3", "-c", connect], user="daemon", capture_output=True)
    assert other.returncode != 0 and b"PermissionError" in other.stderr
    assert call(f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}/guide.json")[0] == 200
    with socket.socket(socket.AF_UNIX) as ours:
        ours.connect(str(service.socket))


def test_viewers_behind_a_trusted_proxy_are_told_apart_and_others_cannot_pretend(
    media_store, channels, tmp_path
):
    """Behind Caddy on the host every viewer comes from 127.0.0.1: with the proxy trusted, the
    viewer named in X-Forwarded-For is the one limited; without it, the header is ignored."""
    from .servers import start_rtmp_server

    titles = {channel.slug: channel.title for channel in channels.channels}
    channels_file = requests_channels_file(tmp_path / "channels.yaml", per_client=2, max_queue=50)
    answers = {}
    for trusted in ((), ("127.0.0.1/32",)):
        folder = tmp_path / ("trusted" if trusted else "direct")
        port = free_port_block(2)
        server = start_rtmp_server(
            folder / "nginx", titles, port, port + 1, folder / "data", trusted_proxies=trusted
        )
        service = ViewerServiceProcess(folder / "data", channels_file, media_store).start()
        url = f"http://127.0.0.1:{port + 1}/api/{SLUG}/requests"
        try:
            statuses = []
            for n, viewer in enumerate(["203.0.113.5"] * 3 + ["203.0.113.6"]):
                idea = {"idea": f"the llama juggling {n} pears"}
                statuses.append(call(url, idea, {"X-Forwarded-For": viewer})[0])
            answers[bool(trusted)] = statuses
        finally:
            service.stop()
            server.stop()
    # Trusted: the first viewer's third request is over its limit of 2, the second viewer's
    # first is taken. Not trusted: all four come from 127.0.0.1, whatever the header says.
    assert answers[True] == [202, 202, 429, 202]
    assert answers[False] == [202, 202, 429, 429]


def take_down_by_job(endpoint: str, bucket: str, channels_file: str, clip: str) -> bool:
    """take_down_job run in a process of its own (Dagster runs in threads of one process
    deadlock on its logging set-up), as the daemon runs it."""
    import dagster as dg

    from webtv_dagster.lib.resources import S3MediaStorage

    from .conftest import ACCESS_KEY, SECRET_KEY, definitions_for_tests, studio_for_tests

    resources = {
        "media_storage": S3MediaStorage(
            public_url="http://viewer.test",
            endpoint_url=endpoint,
            bucket=bucket,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        ),
        "studio": studio_for_tests(channels_file=channels_file),
    }
    config = {"ops": {"take_down_clip": {"config": {"clip_id": clip, "reason": "by a job"}}}}
    with dg.instance_for_test() as instance:
        job = definitions_for_tests().resolve_job_def("take_down_job")
        return job.execute_in_process(
            run_config=config, instance=instance, resources=resources, raise_on_error=False
        ).success


def test_twenty_take_downs_at_once_from_the_viewer_and_from_jobs_are_all_kept(
    service, rtmp_server, media_store
):
    """Dumps from the viewer and take_down_job runs, all at once, each answered only once it is
    recorded: every one is in the take-downs, none lost to another's write."""
    import multiprocessing

    dump = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}/dump"
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    clips = [f"{SLUG}-{number:06d}" for number in range(1, 21)]
    by_viewer, by_jobs = clips[1::2], clips[::2]
    context = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(len(by_jobs), mp_context=context) as jobs,
        concurrent.futures.ThreadPoolExecutor(len(by_viewer)) as viewers,
    ):
        # The jobs' processes start (and import Dagster) first, so that all land together.
        list(jobs.map(time.sleep, [0.1] * len(by_jobs)))
        ran = [
            jobs.submit(
                take_down_by_job,
                media_store.endpoint,
                media_store.bucket,
                str(service.channels_file),
                clip,
            )
            for clip in by_jobs
        ]
        dumped = list(
            viewers.map(
                lambda clip: call(dump, {"clip_id": clip, "reason": "from the viewer"}, operator),
                by_viewer,
            )
        )
        assert all(job.result() for job in ran)
    assert [answer for answer in dumped if answer[0] != 200] == []
    recorded = read_takedowns(media_store, SLUG).clips
    assert sorted(recorded) == clips
    assert {recorded[clip].reason for clip in by_viewer} == {
        "dumped from the viewer: from the viewer"
    }
    assert {recorded[clip].reason for clip in by_jobs} == {"by a job"}


def test_the_api_serves_its_openapi_schema_with_the_operator_routes(service, rtmp_server):
    status, schema = call(f"http://127.0.0.1:{rtmp_server.http_port}/api/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    paths = schema["paths"]
    operator = {
        "/api/{slug}/dump",
        "/api/{slug}/requests/{request_id}/approve",
        "/api/{slug}/requests/{request_id}/refuse",
        "/api/{slug}/play-next",
        "/api/{slug}/restart",
    }
    assert operator | {"/api/{slug}/requests", "/api/{slug}/guide.json"} <= set(paths)
    for path in operator:
        route = paths[path]["post"]
        assert route["security"] == [{"HTTPBearer": []}] and "401" in route["responses"]
    # Bodies as the routes validate them; a refusal says it in the documented form.
    body = paths["/api/{slug}/requests"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/ShotRequestBody"
    assert schema["components"]["schemas"]["ShotRequestBody"]["required"] == ["idea"]
    assert "400" in paths["/api/{slug}/requests"]["post"]["responses"]
    assert "HTTPValidationError" not in json.dumps(schema)


@pytest.fixture
def moderated(rtmp_server, media_store, tmp_path):
    """The service, with requests waiting for an operator's approval."""
    data_dir = rtmp_server.root.parent / "data"
    channels_file = requests_channels_file(tmp_path / "channels.yaml", approval="operator")
    service = ViewerServiceProcess(data_dir, channels_file, media_store).start()
    yield service
    service.stop()


def test_an_operator_approves_and_refuses_requests_through_the_api(moderated, rtmp_server):
    base = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}"
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    ids = []
    for idea in ("the llama baking bread", "the llama fixing a bike"):
        status, answer = call(f"{base}/requests", {"idea": idea, "name": "Ann"})
        assert status == 202 and answer["status"] == "pending"
        ids.append(answer["request_id"])
    assert call(f"{base}/requests/{ids[0]}/approve", {})[0] == 401  # no token: no decision
    status, approved = call(f"{base}/requests/{ids[0]}/approve", {}, operator)
    assert status == 200 and approved["status"] == "approved"
    status, refused = call(f"{base}/requests/{ids[1]}/refuse", {"reason": "not tonight"}, operator)
    assert status == 200 and refused["message"] == "not this one: not tonight"
    assert call(f"{base}/requests/{ids[1]}")[1]["status"] == "refused"  # what its viewer sees
    # A decided request cannot be approved; an unknown one is not found.
    assert call(f"{base}/requests/{ids[1]}/approve", {}, operator)[0] == 409
    assert call(f"{base}/requests/{'0' * 12}/refuse", {}, operator)[0] == 404
    assert call(f"{base}/requests/{ids[0]}/approve", {"reason": 7}, operator)[0] == 400


def test_an_operator_cues_a_clip_and_restarts_a_playout_through_the_api(
    service, rtmp_server, media_store, llama_channel, broadcast_clips
):
    from webtv_dagster.playout.state import PlayoutFolder

    from .conftest import upload_playlist

    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in (1, 2, 3)})
    playout_folder = PlayoutFolder.of(service.data_dir, SLUG)
    playout_folder.path.mkdir(parents=True, exist_ok=True)
    # The service reads the playlist the playout last saved.
    playlist = media_store.get_bytes(f"channels/{SLUG}/playlist.json")
    playout_folder.playlist.write_bytes(playlist)
    base = f"http://127.0.0.1:{rtmp_server.http_port}/api/{SLUG}"
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    status, answer = call(f"{base}/play-next", {"clip_id": f"{SLUG}-000002"}, operator)
    assert (status, answer) == (200, {"cued": f"{SLUG}-000002"})
    assert json.loads(playout_folder.cue.read_text())["clip_id"] == f"{SLUG}-000002"
    status, answer = call(f"{base}/play-next", {"clip_id": f"{SLUG}-000009"}, operator)
    assert status == 404 and "not in the playlist" in answer["error"]
    # No playout runs: nothing to restart.
    assert call(f"{base}/restart", {}, operator)[0] == 409
    # A playout holding the channel's lock is asked to stop, for its supervisor to restart it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # As a playout: SIGTERM's default action, whatever its parent blocked or ignored.
            "import signal, sys; from pathlib import Path; "
            "signal.signal(signal.SIGTERM, signal.SIG_DFL); "
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM]); "
            "from webtv_dagster.playout.process import hold_playout_lock; "
            f"lock = hold_playout_lock(Path({str(service.data_dir)!r}), {SLUG!r}); "
            "lock.__enter__(); print('held', flush=True); signal.pause()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        status, answer = call(f"{base}/restart", {}, operator)
        assert (status, answer) == (200, {"restarting": SLUG})
        assert holder.wait(timeout=10) == -signal.SIGTERM
    finally:
        holder.kill()
