import dagster as dg
from pydantic import Field

from webtv_dagster.clip_steps import clip_asset, materialize_clips
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.resources import S3MediaStorage, Studio
from webtv_dagster.production import ClipProduction, StageReport


class ShotPromptConfig(dg.Config):
    reroll: int = Field(
        0, ge=0, description="0: the clip's own seed; 1, 2...: another seed, for a new take"
    )
    keep_prompt: bool = Field(
        False, description="keep the clip's prompt and change only its seed (needs a reroll)"
    )


@clip_asset(group_name="prompts", kinds={"python", "s3"}, pool="prompt_writer")
def shot_prompt(
    context: dg.AssetExecutionContext,
    config: ShotPromptConfig,
    studio: Studio,
    media_storage: S3MediaStorage,
) -> None:
    """The clip's video-shot prompt and seed (prompt.json), written from the channel's theme,
    style and recurring details, unlike the channel's recent prompts. Rerun a clip with a new
    seed by materializing it from here with config `reroll: N` (and `keep_prompt: true` to
    keep its shot)."""

    def write(production: ClipProduction, clip: ClipId) -> StageReport:
        return production.write_shot_prompt(clip, config.reroll, config.keep_prompt)

    materialize_clips(context, studio, media_storage, write, in_clip_order=True)
