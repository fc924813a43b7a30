"""Alerts: a person hears about what the system could not fix by itself, through the
deployment's webhook (WEBTV_ALERT_WEBHOOK_URL): a failed run, a channel off air or unable to
publish for longer than a sensor tick. (Programs that give up or restart in a loop are alerted
by the stack's watchdog, stack/watchdog.py, which does not depend on the Dagster daemon.)"""

import json
import time

import dagster as dg

from webtv_dagster.lib.names import CHANNEL_TAG, RANGE_END, RANGE_START
from webtv_dagster.lib.resources import AlertWebhook, Studio
from webtv_dagster.playout.process import playout_status
from webtv_dagster.playout.state import read_state

ALERT_CHECK_SECONDS = 30


@dg.run_failure_sensor(
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=ALERT_CHECK_SECONDS,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    """Sends an alert for every failed run: its job, what it was making, and why it failed."""
    run = context.dagster_run
    subject = run.tags.get(CHANNEL_TAG) or " .. ".join(
        filter(None, [run.tags.get(RANGE_START), run.tags.get(RANGE_END)])
    )
    reason = context.failure_event.message or "no message"
    alert_webhook.send(
        context.log,
        f"run of {run.job_name} failed" + (f" ({subject})" if subject else ""),
        f"{reason}\nrun {run.run_id}",
    )


def channel_problem(studio: Studio, slug: str, now: float) -> str | None:
    """Why the channel is not airing as it should, or None."""
    status = playout_status(studio.data_folder, slug, now)
    if status.stopped_by_operator:
        return None
    if not status.running:
        return "its playout is not running"
    if status.needs_start(studio.playout_stale_seconds):
        return f"its playout queued nothing for {status.seconds_since_update:.0f} s"
    state = read_state(studio.data_folder, slug)
    if state is not None and state.publisher_error:
        return f"it cannot publish: {state.publisher_error}"
    return None


@dg.sensor(
    minimum_interval_seconds=ALERT_CHECK_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING
)
def off_air_alert_sensor(
    context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook, studio: Studio
):
    """Alerts when a channel has been off air, stuck or unable to publish on two ticks in a row
    (the playout and the supervisor fix the short faults), and again when it comes back. (A
    supervised program that gives up is the stack's watchdog's to alert: it does not depend on
    this daemon.)"""
    now = time.time()
    problems = {slug: channel_problem(studio, slug, now) for slug in studio.slugs()}
    seen = json.loads(context.cursor) if context.cursor else {}
    for subject, problem in problems.items():
        before = seen.get(subject)  # {"problem": ..., "alerted": bool}
        if problem is None:
            if before and before["alerted"]:
                alert_webhook.send(context.log, f"{subject} is back", "", severity="resolved")
            seen.pop(subject, None)
        elif before is None:
            seen[subject] = {"problem": problem, "alerted": False}  # one tick's grace
        elif not before["alerted"]:
            advice = f"nobody fixed it in {ALERT_CHECK_SECONDS} s: see `webtv status` and its logs"
            alert_webhook.send(context.log, f"{subject}: {problem}", advice)
            seen[subject] = {"problem": problem, "alerted": True}
    return dg.SensorResult(
        skip_reason=f"{sum(p is not None for p in problems.values())} problem(s)",
        cursor=json.dumps(seen, sort_keys=True),
    )
