"""Viewers' shot requests in Dagster: each channel's queue as an external asset, observed when
it changes (what waits for an operator, what is queued), and the job with which an operator
approves or refuses requests. The queue itself is webtv_dagster/production/shot_requests.py."""

import hashlib
import json
import time

import dagster as dg
from pydantic import Field

from webtv_dagster.channels import Channel
from webtv_dagster.lib.partitions import channel_partitions
from webtv_dagster.lib.resources import Studio
from webtv_dagster.production.shot_requests import RequestQueue, ShotRequest

LISTED = 25  # requests shown per status in an observation

shot_requests = dg.AssetSpec(
    "shot_requests",
    description="Viewers' shot requests for the channel (web viewer and chat `!add`), after "
    "moderation: those waiting for an operator and those queued for a clip. Approve or refuse "
    "them with review_requests_job; a clip made of one names it in its shot_prompt metadata.",
    partitions_def=channel_partitions,
    group_name="requests",
    kinds={"sqlite"},
)


def _table(requests: list[ShotRequest]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    rows = [
        f"| `{r.id}` | {cell(r.requester)} | {cell(r.idea)} | {r.source} | "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(r.received_at))} | {cell(r.reason)} |"
        for r in requests
    ]
    return (
        "\n".join(
            ["| id | by | idea | from | received | note |", "|---|---|---|---|---|---|", *rows]
        )
        if rows
        else "(none)"
    )


def queue_observation(queue: RequestQueue, channel: Channel) -> dg.AssetObservation:
    pending = queue.listed(channel.slug, ["pending"], LISTED + 1)
    approved = queue.listed(channel.slug, ["approved"], LISTED + 1)
    return dg.AssetObservation(
        asset_key=shot_requests.key,
        partition=channel.slug,
        metadata={
            "approval": channel.requests.approval,
            "waiting_for_operator": dg.MetadataValue.md(_table(pending[:LISTED])),
            "queued_for_a_clip": dg.MetadataValue.md(_table(approved[:LISTED])),
            "pending": len(pending) if len(pending) <= LISTED else f"over {LISTED}",
            "approved": len(approved) if len(approved) <= LISTED else f"over {LISTED}",
        },
    )


@dg.sensor(minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def shot_requests_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> dg.SensorResult:
    """Observes each channel's request queue when what waits in it changed, so the asset page
    lists the requests waiting for an operator (with their ids for review_requests_job)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    events = []
    taking = [channel for channel in studio.channels.channels if channel.requests.enabled]
    queue = studio.shot_request_queue() if taking else None  # one database for them all
    for channel in taking:
        observation = queue_observation(queue, channel)
        fingerprint = hashlib.sha256(
            json.dumps({k: str(v.value) for k, v in observation.metadata.items()}).encode()
        ).hexdigest()[:16]
        if seen.get(channel.slug) != fingerprint:
            seen[channel.slug] = fingerprint
            events.append(observation)
    return dg.SensorResult(asset_events=events, cursor=json.dumps(seen))


class ReviewRequestsConfig(dg.Config):
    approve: list[str] = Field(default_factory=list, description="ids of requests to approve")
    refuse: list[str] = Field(default_factory=list, description="ids of requests to refuse")
    reason: str = Field("", description="told to the requesters (a refusal's reason)")


@dg.op
def review_requests(context: dg.OpExecutionContext, config: ReviewRequestsConfig, studio: Studio):
    """Approves and refuses viewers' shot requests by id (listed on the shot_requests asset).
    Each decision is kept with its reason and this run as the decider."""
    decided_by = f"operator (Dagster run {context.run_id[:8]})"
    decisions = [(i, True) for i in config.approve] + [(i, False) for i in config.refuse]
    if not decisions:
        raise dg.Failure("name requests to approve or refuse (config: approve, refuse)")
    queue = studio.shot_request_queue()
    touched: dict[str, Channel] = {}
    problems = []
    for request_id, approve in decisions:
        try:
            request = queue.get(request_id)
            if request is None:
                raise KeyError(f"no shot request {request_id!r}")
            decided = queue.decide(request_id, approve, config.reason, decided_by)
            touched[request.channel] = studio.channel(request.channel)
            context.log.info(
                f"{request_id} ({request.channel}): {decided.status}: {decided.reason}"
            )
        except (KeyError, ValueError) as error:
            problems.append(str(error).strip('"'))
    for channel in touched.values():
        context.log_event(queue_observation(queue, channel))
    if problems:
        raise dg.Failure("; ".join(problems))


@dg.job(description="Approves or refuses viewers' shot requests (config: approve, refuse, reason).")
def review_requests_job():
    review_requests()
