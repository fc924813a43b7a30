"""Jobs: make clips, refresh playlists, add new clips to a channel, take a clip off air."""

import time

import dagster as dg
from pydantic import Field

from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.assets.clips import broadcast_clip, interpolated_clip
from webtv_dagster.defs.assets.music import music_track
from webtv_dagster.defs.assets.playlist import playlist, refresh_playlist
from webtv_dagster.defs.assets.prompts import shot_prompt
from webtv_dagster.defs.assets.takes import raw_take, upscaled_take
from webtv_dagster.defs.clip_records import add_clips
from webtv_dagster.defs.history import (
    HISTORY_DAYS,
    forget_clips,
    forget_old_observations,
    forget_old_runs,
)
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.defs.stream import on_air_stream
from webtv_dagster.planning import check_clip_count
from webtv_dagster.retention import (
    clips_to_remove,
    intermediates_to_remove,
    remove_clip,
    remove_intermediates,
    stored_clips,
)
from webtv_dagster.shot_requests import RequestQueue, queue_path
from webtv_dagster.storage import MediaStore
from webtv_dagster.takedowns import TAKEN_DOWN, restore, take_down

# A clip's stages, in pipeline order.
CLIP_STAGES = [shot_prompt, raw_take, upscaled_take, interpolated_clip, music_track, broadcast_clip]

clip_job = dg.define_asset_job(
    "clip_job",
    selection=CLIP_STAGES,
    description="Makes clips from prompt to broadcast clip.",
    tags={"webtv/stage": "clips"},  # at most two at once (dagster.yaml)
)

playlist_job = dg.define_asset_job(
    "playlist_job", selection=[playlist], description="Rebuilds a channel's playlist."
)


class AddClipsConfig(dg.Config):
    channel: str
    count: int = 10


@dg.op
def add_clip_partitions(context: dg.OpExecutionContext, config: AddClipsConfig, studio: Studio):
    """Adds `count` new clip partitions to the channel; the clip sensor requests their runs."""
    try:
        check_clip_count(config.count)
        channel = studio.channel(config.channel)
        added = add_clips(
            context.instance, channel, config.count, studio.aired_through(channel.slug)
        )
    except (ValueError, KeyError) as error:
        raise dg.Failure(str(error).strip('"')) from None
    context.log.info(
        f"added {len(added)} clip(s) to {channel.slug}: {added[0].key} .. {added[-1].key}"
    )


@dg.job(description="Adds new clips to a channel (config: channel, count); they are made next.")
def add_clips_job():
    add_clip_partitions()


def republish_playlist(
    context: dg.OpExecutionContext, studio: Studio, store: MediaStore, channel: Channel
):
    """Rebuilds the channel's playlist from an op, recorded as a materialization of `playlist`
    (the clips it lists changed outside a playlist run)."""
    aired_through = studio.aired_through(channel.slug)
    metadata = refresh_playlist(context.instance, store, channel, aired_through)
    context.log_event(
        dg.AssetMaterialization(playlist.key, partition=channel.slug, metadata=metadata)
    )


class TakeDownConfig(dg.Config):
    clip_id: str
    reason: str = ""
    restore: bool = False


@dg.op
def take_down_clip(
    context: dg.OpExecutionContext,
    config: TakeDownConfig,
    studio: Studio,
    media_storage: S3MediaStorage,
):
    """Pulls a clip off air, recording why (or puts it back, with `restore`), and rebuilds its
    channel's playlist. The playout watches the take-downs: a clip on air is cut at its next
    keyframe, within 2 s, the stream going on into the next clip; a clip waiting to air never
    airs, replays included. The take-down is kept in the bucket
    (channels/<slug>/takedowns.json) and survives restarts and playlist rebuilds."""
    try:
        clip = ClipId.parse(config.clip_id)
        channel = studio.channel(clip.channel)
        store = media_storage.store()
        if config.restore:
            if restore(store, clip) is None:
                raise ValueError(f"{clip.key} was not taken down")
            event = {"on_air": "restored"}
        else:
            event = {"on_air": TAKEN_DOWN, "reason": take_down(store, clip, config.reason).reason}
    except (ValueError, KeyError) as error:
        raise dg.Failure(str(error)) from None
    republish_playlist(context, studio, store, channel)
    context.log_event(dg.AssetObservation(broadcast_clip.key, partition=clip.key, metadata=event))
    context.log.info(f"{clip.key}: {event['on_air']}; {channel.slug} playlist rebuilt")


@dg.job(
    description="Takes a clip off air with a reason, or restores it (config: clip_id, "
    "reason, restore)."
)
def take_down_job():
    take_down_clip()


class RetentionConfig(dg.Config):
    channel: str = Field("", description="one channel; empty: every channel with a policy")


@dg.op
def apply_retention(
    context: dg.OpExecutionContext,
    config: RetentionConfig,
    studio: Studio,
    media_storage: S3MediaStorage,
):
    """Removes each channel's old aired clips from the bucket by its `retention:` policy (keep
    days, keep GB), never a clip that has not aired nor one kept for replays, and the playlist
    is rebuilt without them; removes intermediates a while after their clip passed QC. Dagster
    forgets what is gone: the removed clips' partitions and runs, and the runs and on-air
    observations older than a week that made no clip (webtv_dagster/defs/history.py). Decided
    shot requests are forgotten after 30 days (shot_requests.HISTORY_SECONDS)."""
    store = media_storage.store()
    data_dir = studio.data_folder
    now = time.time()
    channels = [studio.channel(config.channel)] if config.channel else studio.channels.channels
    for channel in channels:
        policy = channel.retention
        aired_through = studio.aired_through(channel.slug)
        clips = stored_clips(store, channel.slug)
        removed = clips_to_remove(clips, policy, aired_through, now)
        for clip in removed:
            remove_clip(store, clip)
        gone = {clip.clip_id for clip in removed}
        trimmed = [c for c in intermediates_to_remove(clips, policy, now) if c.clip_id not in gone]
        for clip in trimmed:
            remove_intermediates(store, clip)
        runs = forget_clips(context.instance, sorted(gone))
        freed = sum(c.size_bytes for c in removed) + sum(c.intermediate_bytes for c in trimmed)
        context.log.info(
            f"{channel.slug}: removed {len(removed)} of {len(clips)} clip(s)"
            + (f" ({removed[0].clip_id} .. {removed[-1].clip_id})" if removed else "")
            + f" and the intermediates of {len(trimmed)}, {freed} bytes, by "
            f"{policy.model_dump_json(exclude_none=True)} (aired through {aired_through}); "
            f"Dagster forgot their partitions and {runs} run(s)"
        )
        if removed:
            republish_playlist(context, studio, store, channel)
    if queue_path(data_dir).exists():
        forgotten = RequestQueue(queue_path(data_dir)).prune(now)
        context.log.info(f"forgot {forgotten} decided shot request(s) past their history")
    runs = forget_old_runs(context.instance, now)
    observations = sum(
        forget_old_observations(context.instance, asset.key, now)
        for asset in (on_air_stream, broadcast_clip)
    )
    context.log.info(
        f"Dagster forgot {runs} run(s) and {observations} observation(s) older than "
        f"{HISTORY_DAYS} days"
    )


@dg.job(description="Applies each channel's retention policy (config: channel, optional).")
def retention_job():
    apply_retention()
