"""Taking a clip off air (or putting it back) from the Dagster UI."""

import dagster as dg

from webtv_dagster.clips import ClipId
from webtv_dagster.defs.air.playlist import republish_playlist
from webtv_dagster.lib.names import BROADCAST_CLIP
from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.playout.takedowns import TAKEN_DOWN, restore, take_down


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
    context.log_event(dg.AssetObservation(BROADCAST_CLIP, partition=clip.key, metadata=event))
    context.log.info(f"{clip.key}: {event['on_air']}; {channel.slug} playlist rebuilt")


@dg.job(
    description="Takes a clip off air with a reason, or restores it (config: clip_id, "
    "reason, restore)."
)
def take_down_job():
    take_down_clip()
