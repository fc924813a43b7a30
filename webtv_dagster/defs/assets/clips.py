import dagster as dg

from webtv_dagster.clip_steps import (
    OWNERS,
    clip_asset,
    materialize_clips,
    quality_check_specs,
)
from webtv_dagster.defs.assets.music import music_track
from webtv_dagster.defs.assets.takes import upscaled_take
from webtv_dagster.defs.partitions import clip_backfill_policy, clip_partitions
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction


@clip_asset(group_name="clips", kinds={"video", "s3"}, pool="interpolator", deps=[upscaled_take])
def interpolated_clip(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The upscaled take interpolated to 24 fps and slowed to the channel's clip length
    (interpolated.mp4)."""
    materialize_clips(context, studio, media_storage, ClipProduction.interpolate_clip)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "broadcast_clip",
            description="Video and music in the broadcast profile (broadcast.mp4: 1024x576, "
            "24 fps, H.264 with a keyframe every 2 s, AAC 48 kHz stereo at -16 LUFS, audio "
            "exactly as long as video), its quality report (qc.json) and, only if every "
            "quality check passed, broadcast.json, whose presence makes the clip airable.",
            deps=[interpolated_clip, music_track],
            partitions_def=clip_partitions,
            group_name="clips",
            kinds={"video", "s3"},
            owners=OWNERS,
        )
    ],
    check_specs=quality_check_specs("broadcast_clip"),
    backfill_policy=clip_backfill_policy,
    # Check results are reported per clip as they are measured, not as step outputs.
    can_subset=True,
)
def broadcast_clip(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
):
    """Assembles each clip of the run and checks its quality; a clip that fails a check is not
    materialized and fails the run, naming the checks and their measurements."""
    # Not retried: what fails here (a quality check, the assembly) fails the same way again.
    materialize_clips(
        context, studio, media_storage, ClipProduction.assemble_broadcast_clip, retried=False
    )
    yield dg.MaterializeResult(asset_key="broadcast_clip")
