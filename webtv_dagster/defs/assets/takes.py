import dagster as dg

from webtv_dagster.clip_steps import clip_asset, materialize_clips
from webtv_dagster.defs.assets.prompts import shot_prompt
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction


@clip_asset(group_name="takes", kinds={"video", "s3"}, pool="text_to_video", deps=[shot_prompt])
def raw_take(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The text-to-video take of the prompt (raw.mp4, 576x320, a few seconds at 8 fps)."""
    materialize_clips(context, studio, media_storage, ClipProduction.render_raw_take)


@clip_asset(group_name="takes", kinds={"video", "s3"}, pool="upscaler", deps=[raw_take])
def upscaled_take(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The raw take upscaled to 1024x576 with the same prompt (upscaled.mp4)."""
    materialize_clips(context, studio, media_storage, ClipProduction.upscale_take)
