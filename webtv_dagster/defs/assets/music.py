import dagster as dg

from webtv_dagster.clip_steps import clip_asset, materialize_clips
from webtv_dagster.defs.assets.prompts import shot_prompt
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction


@clip_asset(group_name="music", kinds={"audio", "s3"}, pool="music", deps=[shot_prompt])
def music_track(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The clip's score (music.flac, stereo 48 kHz, as long as the clip), from the shot and
    the channel's music mood."""
    materialize_clips(context, studio, media_storage, ClipProduction.compose_music)
