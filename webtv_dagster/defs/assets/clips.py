import dagster as dg

from webtv_dagster.defs.assets.music import music_track
from webtv_dagster.defs.assets.takes import upscaled_take
from webtv_dagster.defs.clip_batches import clip_asset, materialize_clips
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction


@clip_asset(group_name="clips", kinds={"video", "s3"}, pool="interpolator", deps=[upscaled_take])
def interpolated_clip(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The upscaled take interpolated to 24 fps and slowed to the channel's clip length
    (interpolated.mp4)."""
    materialize_clips(context, studio, media_storage, ClipProduction.interpolate_clip)


@clip_asset(group_name="clips", kinds={"video", "s3"}, deps=[interpolated_clip, music_track])
def broadcast_clip(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """Video and music in the broadcast profile (broadcast.mp4: 1024x576, 24 fps, H.264 with a
    keyframe every 2 s, AAC 48 kHz stereo at -16 LUFS, audio exactly as long as video), plus
    broadcast.json, whose presence makes the clip airable."""
    materialize_clips(context, studio, media_storage, ClipProduction.assemble_broadcast_clip)
