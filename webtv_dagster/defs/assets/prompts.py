import dagster as dg

from webtv_dagster.defs.clip_batches import clip_asset, materialize_clips
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction


@clip_asset(group_name="prompts", kinds={"python", "s3"}, pool="prompt_writer")
def shot_prompt(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The clip's video-shot prompt and seed (prompt.json), written from the channel's theme,
    style and recurring details, unlike the channel's recent prompts."""
    materialize_clips(
        context, studio, media_storage, ClipProduction.write_shot_prompt, in_clip_order=True
    )
