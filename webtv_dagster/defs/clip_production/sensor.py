"""The clip production sensor: keeps every channel's buffer of unaired clips full, and books
again the clips of runs that ended through no fault of their own."""

import json
import time
from datetime import UTC, datetime

import dagster as dg
from pydantic import BaseModel, Field

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId, clips_of_channel
from webtv_dagster.defs.clip_production.assets import CLIP_STAGES, clip_job
from webtv_dagster.lib.clip_records import (
    ClipStatus,
    added_partitions,
    clip_statuses,
    taken_down_keys,
    unfinished_clips,
)
from webtv_dagster.lib.names import (
    PARENT_RUN,
    PRIORITY,
    RANGE_END,
    RANGE_START,
    REBOOK_OF,
    is_model_tag,
    model_tag,
)
from webtv_dagster.lib.partitions import (
    channel_partition_requests,
    clip_partitions,
)
from webtv_dagster.lib.resources import Studio
from webtv_dagster.production.planning import (
    MAX_BACKLOG_CLIPS,
    clips_needed,
    run_batches,
    run_priority,
    whole_scenes,
)
from webtv_dagster.stack.instance import STOPPED_WITH_STACK_TAG


def clip_run_request(channel: Channel, batch: list[ClipId], deadline: float) -> dg.RunRequest:
    """A run for a batch of one channel's clips, due on air by `deadline` (Unix time): its
    priority puts it in the queue by deadline across channels. Tagged with the model each stage
    calls (`webtv/<family>_model`): dagster.yaml limits runs per remote model with these tags."""
    first, last = batch[0].key, batch[-1].key
    models = {model_tag(family): name for family, name in channel.backends}
    return dg.RunRequest(
        run_key=f"clips:{first}..{last}",
        job_name=clip_job.name,
        tags={RANGE_START: first, RANGE_END: last, PRIORITY: str(run_priority(deadline)), **models},
    )


REBOOKED_TAGS = (PRIORITY,)
FAILED_RUNS_SEEN_SECONDS = 3600


def rebook_requests(instance: dg.DagsterInstance) -> tuple[list[dg.RunRequest], set[str]]:
    """Runs that finish the clips that ended clip runs left unfinished through no fault of
    their own, and those clips' keys: the clips of runs canceled by a stack stop (`webtv down`,
    Ctrl-C on `webtv up`), and the batch-mates of clips that failed (a clip's failure fails its
    stage's step, and Dagster then skips the later stages for the whole batch). Each new run
    makes only the stages a clip still needs, for consecutive clips needing the same; the
    failed clips are left failed. Looks at the newest twenty runs of each kind, failed ones
    only while they are recent: a tick's cost does not grow with history."""
    canceled = instance.get_run_records(
        dg.RunsFilter(
            job_name=clip_job.name,
            statuses=[dg.DagsterRunStatus.CANCELED],
            tags={STOPPED_WITH_STACK_TAG: "true"},
        ),
        limit=20,
    )
    failed = instance.get_run_records(
        dg.RunsFilter(
            job_name=clip_job.name,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(time.time() - FAILED_RUNS_SEEN_SECONDS, UTC),
        ),
        limit=20,
    )
    stages = [stage.key for stage in CLIP_STAGES]
    requests, keys = [], set()
    for record in [*canceled, *failed]:
        run = record.dagster_run
        followed = [{REBOOK_OF: run.run_id}, {PARENT_RUN: run.run_id}]  # ours, or a UI re-execution
        if any(instance.get_run_records(dg.RunsFilter(tags=tags), limit=1) for tags in followed):
            continue
        unfinished = {
            key: left for key, left in unfinished_clips(instance, run, stages).items() if left
        }
        # The same models and priority (its deadline has not moved).
        kept = {
            key: value
            for key, value in run.tags.items()
            if is_model_tag(key) or key in REBOOKED_TAGS
        }
        for batch, left in _consecutive_alike(unfinished):
            requests.append(
                dg.RunRequest(
                    run_key=f"rebook:{run.run_id}:{batch[0]}",
                    job_name=clip_job.name,
                    asset_selection=None if left == stages else left,
                    tags={
                        **kept,
                        RANGE_START: batch[0],
                        RANGE_END: batch[-1],
                        REBOOK_OF: run.run_id,
                    },
                )
            )
        keys |= set(unfinished)
    return requests, keys


def _consecutive_alike(
    unfinished: dict[str, list[dg.AssetKey]],
) -> list[tuple[list[str], list[dg.AssetKey]]]:
    """Clips (in clip order) grouped into runs of consecutive numbers that need the same
    stages: a run targets a range of partitions and one selection of assets."""
    groups: list[tuple[list[str], list[dg.AssetKey]]] = []
    previous = None
    for key in sorted(unfinished, key=lambda key: ClipId.parse(key).number):
        number = ClipId.parse(key).number
        if groups and previous == number - 1 and groups[-1][1] == unfinished[key]:
            groups[-1][0].append(key)
        else:
            groups.append(([key], unfinished[key]))
        previous = number
    return groups


class ChannelCursor(BaseModel):
    requested: int = Field(0, description="every clip up to here was requested or booked")
    seen: int = Field(0, description="the channel's highest clip at the last tick")


class PlannerCursor(BaseModel):
    partitions: str | None = Field(None, description="position in Dagster's partition table")
    channels: dict[str, ChannelCursor] = Field(default_factory=dict)


def read_planner_cursor(cursor: str | None) -> PlannerCursor:
    raw = json.loads(cursor) if cursor else {}
    if raw and "channels" not in raw:  # the cursor before partitions were read incrementally
        return PlannerCursor(channels=raw)
    return PlannerCursor.model_validate(raw)


def clips_past_air(channel: Channel, highest: int, aired_through: int) -> list[ClipId]:
    """The channel's clips that can still matter to the planner: those past air, at most
    MAX_BACKLOG_CLIPS of them."""
    low = max(aired_through, highest - MAX_BACKLOG_CLIPS)
    return [ClipId(channel=channel.slug, number=n) for n in range(low + 1, highest + 1)]


def plan_channel(
    channel: Channel,
    cursor: ChannelCursor,
    highest: int,
    aired_through: int,
    statuses: dict[str, ClipStatus],
    not_airing: set[str],
    clips_per_run: int,
) -> tuple[list[ClipId], list[dg.RunRequest]]:
    """One channel's tick: the clips to add so that its buffer holds `ahead_seconds`, and runs
    for its clips added since the last tick that nobody booked (`cursor` moves on). `statuses`
    says what runs did with its clips past air, `not_airing` which failed or were taken down."""
    window = clips_past_air(channel, highest, aired_through)
    if cursor == ChannelCursor():
        # First sight of the channel: clips some run already targeted were booked before.
        cursor.requested = max((c.number for c in window if c.key in statuses), default=0)
    unaired = [clip for clip in window if clip.key not in not_airing]
    backlog = highest - min(aired_through, highest)
    count = whole_scenes(
        clips_needed(channel, len(unaired), backlog, clips_per_run), highest, channel.scene_clips
    )
    added = [ClipId(channel=channel.slug, number=highest + n) for n in range(1, count + 1)]
    due = [
        clip
        for clip in window
        if cursor.requested < clip.number <= cursor.seen and clip.key not in statuses
    ]

    # A run is due on air once the unaired clips before it have played.
    def seconds_ahead_of(clip: ClipId) -> float:
        return sum(1 for c in unaired if c.number < clip.number) * channel.clip_seconds

    now = time.time()
    nothing_ahead = bool(due) and seconds_ahead_of(due[0]) == 0
    batches = run_batches(
        due, clips_per_run, start_with_one=nothing_ahead, scene_clips=channel.scene_clips
    )
    requests = [
        clip_run_request(channel, batch, now + seconds_ahead_of(batch[0])) for batch in batches
    ]
    cursor.requested = max(cursor.requested, cursor.seen)
    cursor.seen = max(cursor.seen, highest + count)
    return added, requests


@dg.sensor(
    job=clip_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def clip_production_sensor(context: dg.SensorEvaluationContext, studio: Studio) -> dg.SensorResult:
    """Plans clips until each channel has `ahead_seconds` of unaired content, and requests a
    run for every clip partition added since (by this sensor, a schedule, the add_clips job or
    the UI) that nobody has booked yet, in batches of WEBTV_CLIPS_PER_RUN, queued by how soon
    each channel needs them on air. A new clip waits one tick before it is requested: a schedule
    adds its clips and books their runs in one go, so by the next tick its clips show as booked
    and are left alone; no clip is ever booked twice.

    Every planned clip that has neither aired nor failed counts as unaired: what has aired comes
    from the channel's playout state (`webtv playout`; without one, nothing has), and failed
    clips stay for an operator to rerun while new ones take their place in the buffer; a
    viewer's request a failed clip was made of goes back to the front of its queue. A tick
    reads only the partitions added since the last one and, for every channel at once, the
    clips past air, so its cost grows with neither history nor (much) with channels; a channel
    that fails to plan is logged and the others go on. Keeps the channel partitions in step
    with the channels file."""
    cursor = read_planner_cursor(context.cursor)
    new_keys, cursor.partitions = added_partitions(context.instance, cursor.partitions)
    run_requests, rebooked = rebook_requests(context.instance)
    channels = studio.channels.channels
    previous, highest, aired = {}, {}, {}
    for channel in channels:
        slug = channel.slug
        previous[slug] = cursor.channels.get(slug, ChannelCursor())
        numbers = [clip.number for clip in clips_of_channel(new_keys, slug)]
        highest[slug] = max([previous[slug].seen, *numbers])
        aired[slug] = studio.aired_through(slug)
        # Its new clips are remembered even if it fails to plan below (the partition position
        # moved on); the next tick that plans the channel books them.
        cursor.channels[slug] = previous[slug].model_copy(update={"seen": highest[slug]})
    keys = [
        clip.key
        for channel in channels
        for clip in clips_past_air(channel, highest[channel.slug], aired[channel.slug])
    ]
    statuses = clip_statuses(context.instance, keys)
    failed = {key for key, status in statuses.items() if status == ClipStatus.FAILED} - rebooked
    not_airing = failed | taken_down_keys(context.instance, keys)
    if failed and any(channel.requests.enabled for channel in channels):
        released = studio.shot_request_queue().release(sorted(failed))
        if released:
            context.log.info(f"shot requests of failed clips queued again: {released}")
    added: list[str] = []
    for channel in channels:
        planned = previous[channel.slug].model_copy()
        try:
            clips, requests = plan_channel(
                channel,
                planned,
                highest[channel.slug],
                aired[channel.slug],
                statuses,
                not_airing,
                studio.clips_per_run,
            )
        except Exception:  # one channel's fault must not stop the others' planning
            context.log.exception(f"{channel.slug}: planning failed; the other channels go on")
            continue
        cursor.channels[channel.slug] = planned
        added += [clip.key for clip in clips]
        run_requests += requests
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[
            *channel_partition_requests(context.instance, studio.channels),
            *([clip_partitions.build_add_request(added)] if added else []),
        ],
        cursor=cursor.model_dump_json(),
    )
