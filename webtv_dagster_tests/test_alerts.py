"""Alerts reach a real HTTP webhook receiver; the webhook's secret path never reaches a log."""

import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from webtv_dagster.defs.alerts import off_air_alert_sensor, run_failure_alert_sensor
from webtv_dagster.lib.resources import AlertWebhook
from webtv_dagster.stack.alerts import AlertError, WebhookNotifier
from webtv_dagster_tests.servers import free_port_block

from .conftest import SECRET_PATH, definitions_for_tests, studio_for_tests


def test_a_failed_run_is_sent_to_the_webhook(receiver, caplog):
    url, received = receiver
    with dg.instance_for_test() as instance:
        result = (
            definitions_for_tests()
            .resolve_job_def("add_clips_job")
            .execute_in_process(
                run_config={"ops": {"add_clip_partitions": {"config": {"channel": "nosuch"}}}},
                instance=instance,
                raise_on_error=False,
            )
        )
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=failure,
        ).for_run_failure()
        run_failure_alert_sensor(context, alert_webhook=AlertWebhook(url=url))
    (alert,) = received
    assert alert["path"] == SECRET_PATH
    assert "run of add_clips_job failed" in alert["text"] and alert["content"] == alert["text"]
    assert result.run_id in alert["text"]
    assert SECRET_PATH not in caplog.text


def test_an_unreachable_webhook_is_named_by_its_host_only():
    dead = f"http://127.0.0.1:{free_port_block(1)}{SECRET_PATH}"
    with pytest.raises(AlertError) as error:
        WebhookNotifier(dead, timeout_seconds=2).send("t", "d")
    assert "unreachable" in str(error.value) and "very-secret-token" not in str(error.value)
    # The resource logs the failure and carries on: an alert never fails a sensor.
    logged = []

    class Log:
        def warning(self, message):
            logged.append(message)

    assert AlertWebhook(url=dead).send(Log(), "t", "d") is False
    assert logged and "very-secret-token" not in logged[0]


def test_a_channel_off_air_is_alerted_once_after_a_tick_of_grace_and_again_when_back(
    receiver, tmp_path
):
    from webtv_dagster.playout.process import hold_playout_lock
    from webtv_dagster.playout.state import PlayoutState, write_state
    from webtv_dagster.stack.playouts import stop_playout

    url, received = receiver
    studio = studio_for_tests(data_dir=tmp_path)
    stop_playout(tmp_path, "test-ocean")  # an operator took this one off air: no alert
    webhook = AlertWebhook(url=url)
    with dg.instance_for_test() as instance:

        def tick(cursor):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            return off_air_alert_sensor(context, alert_webhook=webhook, studio=studio).cursor

        cursor = tick(None)
        assert received == []  # one tick of grace: the supervisor may fix it meanwhile
        cursor = tick(cursor)
        (alert,) = received
        assert alert["title"] == "test-llamas: its playout is not running"
        cursor = tick(cursor)
        assert len(received) == 1  # said once
        held = threading.Event()
        release = threading.Event()

        def playout():
            with hold_playout_lock(tmp_path, "test-llamas"):
                write_state(
                    tmp_path,
                    PlayoutState(
                        channel="test-llamas",
                        title="t",
                        publisher_started_at=time.time(),
                        updated_at=time.time(),
                        unplayed_seconds=0,
                        schedule=[],
                        up_next=[],
                    ),
                )
                held.set()
                release.wait(30)

        thread = threading.Thread(target=playout)
        thread.start()
        try:
            held.wait(10)
            tick(cursor)
        finally:
            release.set()
            thread.join()
    assert received[-1]["title"] == "test-llamas is back"
    assert received[-1]["severity"] == "resolved"


class _Supervisord:
    """supervisord's process list as the watchdog reads it, changed by the test."""

    def __init__(self):
        self.list: list[dict] = []

    def processes(self) -> list[dict]:
        return self.list


def _process(name: str, state: str, pid: int, why: str = "") -> dict:
    return {"group": name, "name": name, "statename": state, "pid": pid, "spawnerr": why}


def test_the_watchdog_alerts_a_program_that_gives_up_or_loops_and_retries_refused_alerts(
    tmp_path, monkeypatch
):
    """Without the Dagster daemon (the program that gives up may be the daemon itself): a
    program entering FATAL, running again, and starting 3 times within 10 minutes; a receiver
    that refuses the first attempts gets each alert once it takes them."""
    from webtv_dagster.stack import alerts as alerts_module
    from webtv_dagster.stack.watchdog import Watchdog

    from .conftest import settings_for_tests, webhook_receiver

    monkeypatch.setattr(alerts_module, "ALERT_FIRST_RETRY_SECONDS", 0.2)
    with webhook_receiver(refuse_first=2) as (url, received, attempts):
        settings = settings_for_tests(data_dir=tmp_path, alert_webhook_url=url)
        supervisord = _Supervisord()
        watchdog = Watchdog(settings, supervisord, "127.0.0.1:1", tmp_path)

        def look(*processes: dict) -> None:
            watchdog._count_starts(list(processes))
            watchdog.look_at_states(list(processes))

        look(_process("dagster-daemon", "RUNNING", 10))
        look(
            _process(
                "dagster-daemon", "FATAL", 0, "Exited too quickly (process log may have details)"
            )
        )
        look(_process("dagster-daemon", "FATAL", 0))  # once, not at every look
        wait_for_alerts(received, 1)
        assert received[0]["title"] == "dagster-daemon gave up"
        assert "Exited too quickly" in received[0]["text"] and received[0]["severity"] == "error"
        assert len(attempts) == 3  # refused twice, then taken
        look(_process("dagster-daemon", "RUNNING", 11))
        wait_for_alerts(received, 2)
        assert received[1]["title"] == "dagster-daemon runs again"
        # Started 3 times within 10 minutes (pids 10, 11, 12): a loop, alerted once.
        look(_process("dagster-daemon", "RUNNING", 12))
        look(_process("dagster-daemon", "RUNNING", 13))
        wait_for_alerts(received, 3)
        assert received[2]["title"] == "dagster-daemon restarts in a loop"
        assert watchdog.restarts["dagster-daemon"] == 3
        time.sleep(0.5)
        assert len(received) == 3


def wait_for_alerts(received: list, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) >= count, received


# A process holding `megabytes` of written memory (resident), ignoring SIGTERM if asked, else
# ended by it as a program under supervisord is. Said explicitly: a child inherits the signals
# its parent ignores or blocks, and the test process's may not be the defaults (in one CI run
# the hog outlived SIGTERM).
MEMORY_HOG = """
import signal, sys, time
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
on_term = signal.SIG_IGN if sys.argv[1] == "ignore-term" else signal.SIG_DFL
signal.signal(signal.SIGTERM, on_term)
held = b"x" * (int(sys.argv[2]) * 2**20)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_program_past_its_memory_ceiling_is_stopped_for_a_fresh_start_and_alerted(
    tmp_path, monkeypatch
):
    """Real processes over and under a 64 MB ceiling: the ones over it are asked to stop (their
    process group gets SIGTERM, for supervisord to start them afresh), one that ignores it is
    killed after the grace; one under it, and nginx over it, are left alone; each restart is
    alerted once."""
    from webtv_dagster.stack import watchdog as watchdog_module
    from webtv_dagster.stack.watchdog import Watchdog

    from .conftest import settings_for_tests, webhook_receiver

    monkeypatch.setattr(watchdog_module, "RECYCLE_STOP_SECONDS", 1.0)

    def hog(megabytes: int, on_term: str = "stop") -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", MEMORY_HOG, on_term, str(megabytes)],
            stdout=subprocess.PIPE,
            start_new_session=True,  # its own process group, as under supervisord
        )
        assert process.stdout.readline() == b"ready\n"
        return process

    programs = {
        "dagster-daemon": hog(120),
        "viewer-service": hog(120, "ignore-term"),
        "dagster-webserver": hog(16),
        "rtmp": hog(120),
    }
    try:
        with webhook_receiver() as (url, received, _):
            settings = settings_for_tests(
                data_dir=tmp_path, alert_webhook_url=url, memory_ceiling_mb=64
            )
            watchdog = Watchdog(settings, _Supervisord(), "127.0.0.1:1", tmp_path)
            running = {
                name: _process(name, "RUNNING", process.pid) for name, process in programs.items()
            }
            watchdog.look_at_memory(running)
            assert programs["dagster-daemon"].wait(timeout=10) == -signal.SIGTERM
            watchdog.look_at_memory(running)  # asked once, not at every look
            time.sleep(1.2)
            assert programs["viewer-service"].poll() is None  # it ignored the request
            watchdog.look_at_memory(running)
            assert programs["viewer-service"].wait(timeout=10) == -signal.SIGKILL
            assert programs["dagster-webserver"].poll() is None  # under the ceiling
            assert programs["rtmp"].poll() is None  # nginx is not this ceiling's
            wait_for_alerts(received, 2)
            time.sleep(0.3)
            titles = sorted(alert["title"] for alert in received)
            assert titles == [
                "dagster-daemon restarted at its memory ceiling",
                "viewer-service restarted at its memory ceiling",
            ]
            assert "over WEBTV_MEMORY_CEILING_MB (64)" in received[0]["text"]
    finally:
        for process in programs.values():
            process.kill()
            process.wait()


def test_alerts_wait_on_disk_until_every_receiver_took_them_even_across_a_watchdog_restart(
    tmp_path, monkeypatch
):
    """A webhook that is down, an Apprise URL (json://) whose receiver refuses twice and
    another that takes it at once: the alert waits in the outbox on disk; the refusing Apprise
    receiver gets it on the third try; the watchdog stops (as when it is killed and restarted)
    with the webhook still down; a new watchdog on the same data folder delivers it to the
    webhook once it is up. Each receiver gets it once, and the outbox is empty after."""
    from webtv_dagster.stack import alerts as alerts_module
    from webtv_dagster.stack.alerts import alerts_folder
    from webtv_dagster.stack.watchdog import Watchdog

    from .conftest import settings_for_tests, webhook_receiver

    monkeypatch.setattr(alerts_module, "ALERT_FIRST_RETRY_SECONDS", 0.2)
    webhook_port = free_port_block(1)
    outbox = alerts_folder(tmp_path)
    with (
        webhook_receiver(refuse_first=2) as (url, by_apprise, apprise_attempts),
        webhook_receiver() as (other_url, by_other_apprise, _),
    ):
        # Two Apprise URLs of one scheme: shown alike, kept apart.
        apprise_urls = [address.replace("http://", "json://") for address in (url, other_url)]
        settings = settings_for_tests(
            data_dir=tmp_path,
            alert_webhook_url=f"http://127.0.0.1:{webhook_port}{SECRET_PATH}",
            alert_urls=", ".join(apprise_urls),
        )
        first = Watchdog(settings, _Supervisord(), "127.0.0.1:1", tmp_path)
        first._notify("dagster-daemon gave up", "supervisord stopped restarting it", "error")
        wait_for_alerts(by_apprise, 1)
        assert len(apprise_attempts) == 3
        assert by_apprise[0]["title"] == "[webtv error] dagster-daemon gave up"
        assert by_apprise[0]["message"] == "supervisord stopped restarting it"
        assert by_apprise[0]["type"] == "failure" and by_apprise[0]["path"] == SECRET_PATH
        first.stop.set()
        (waiting,) = outbox.glob("*.json")
        assert SECRET_PATH not in waiting.read_text()  # receivers are named without secrets
        with webhook_receiver(port=webhook_port) as (_, by_webhook, _):
            second = Watchdog(settings, _Supervisord(), "127.0.0.1:1", tmp_path)
            try:
                wait_for_alerts(by_webhook, 1)
                assert by_webhook[0]["title"] == "dagster-daemon gave up"
                deadline = time.monotonic() + 5
                while list(outbox.glob("*.json")) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert list(outbox.glob("*.json")) == []
                time.sleep(0.5)
                assert len(by_webhook) == len(by_apprise) == len(by_other_apprise) == 1
            finally:
                second.stop.set()


def test_webtv_alert_reaches_apprise_urls_and_names_a_refusal_without_its_secret(tmp_path):
    """`webtv alert` (what systemd's OnFailure= unit runs) sends to every receiver; one that
    refuses makes it fail, named by its scheme only; an Apprise URL nobody knows is refused by
    `webtv check` before anything runs."""
    import os

    from .conftest import webhook_receiver

    webtv = [sys.executable, "-m", "webtv_dagster.cli"]
    with webhook_receiver(refuse_first=1) as (url, received, _):
        environment = {**os.environ, "WEBTV_ALERT_URLS": url.replace("http://", "json://")}
        refused = subprocess.run(
            [*webtv, "alert", "a title", "--details", "some details"],
            env=environment,
            capture_output=True,
            text=True,
        )
        assert refused.returncode != 0
        assert "json://<secret> (Apprise) did not take the alert" in refused.stderr
        assert SECRET_PATH not in refused.stderr + refused.stdout
        taken = subprocess.run(
            [*webtv, "alert", "a title", "--details", "some details"],
            env=environment,
            capture_output=True,
        )
        assert taken.returncode == 0, taken.stderr
        assert [alert["title"] for alert in received] == ["[webtv error] a title"]
    unknown = {**os.environ, "WEBTV_ALERT_URLS": "nosuchservice://token/chat"}
    checked = subprocess.run([*webtv, "check"], env=unknown, capture_output=True, text=True)
    assert checked.returncode != 0
    assert "nosuchservice://<secret> (Apprise) is not a URL Apprise knows" in checked.stderr
    assert "token/chat" not in checked.stderr


def test_an_alert_the_disk_cannot_take_is_held_in_memory_and_delivered(tmp_path):
    """The outbox's folder cannot be written (here a file stands where the folder goes; on a
    full disk the write fails the same way, and the alert may be the one saying so): the
    alert is held in memory and delivered all the same."""
    from webtv_dagster.stack.alerts import AlertOutbox, WebhookNotifier

    from .conftest import webhook_receiver

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with webhook_receiver(refuse_first=1) as (url, received, attempts):
        outbox = AlertOutbox(blocked / "alerts", [WebhookNotifier(url)])
        outbox.put("the data folder's disk is full", "0 MB free", "error")
        assert outbox.deliver_due() is not None  # refused once: it waits for its next try
        deadline = time.monotonic() + 10
        while outbox.deliver_due() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [alert["title"] for alert in received] == ["the data folder's disk is full"]
        assert len(attempts) == 2
