"""A clip's stages as assets partitioned per clip, from its shot prompt to its broadcast clip,
and the job that makes them. Each asset only calls the production code
(webtv_dagster/production/stages.py) through lib/clip_steps.py."""

import dagster as dg
from pydantic import Field

from webtv_dagster.clips import ClipId
from webtv_dagster.lib.clip_steps import clip_asset, materialize_clips, quality_check_specs
from webtv_dagster.lib.names import BROADCAST_CLIP, STAGE_TAG
from webtv_dagster.lib.partitions import clip_backfill_policy, clip_partitions
from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.production.stages import ClipProduction, StageReport


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


@clip_asset(group_name="takes", kinds={"video", "s3"}, pool="text_to_video", deps=[shot_prompt])
def raw_take(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The text-to-video take of the prompt (raw.mp4: 576x320, a few seconds at 8 fps, or the
    shape of its model's preset). In a channel with scenes, each take after a scene's first
    starts from the last frame of the take before it: a scene's takes are made in turn."""
    materialize_clips(
        context, studio, media_storage, ClipProduction.render_raw_take, scenes_in_order=True
    )


@clip_asset(group_name="takes", kinds={"video", "s3"}, pool="upscaler", deps=[raw_take])
def upscaled_take(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The raw take upscaled to 1024x576 with the same prompt (upscaled.mp4)."""
    materialize_clips(context, studio, media_storage, ClipProduction.upscale_take)


@clip_asset(group_name="clips", kinds={"video", "s3"}, pool="interpolator", deps=[upscaled_take])
def interpolated_clip(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The upscaled take interpolated to 24 fps and slowed to the channel's clip length
    (interpolated.mp4)."""
    materialize_clips(context, studio, media_storage, ClipProduction.interpolate_clip)


@clip_asset(group_name="music", kinds={"audio", "s3"}, pool="music", deps=[shot_prompt])
def music_track(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> None:
    """The clip's score (music.flac, stereo 48 kHz, as long as the clip), from the shot and
    the channel's music mood."""
    materialize_clips(context, studio, media_storage, ClipProduction.compose_music)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BROADCAST_CLIP,
            description="Video and music in the broadcast profile (broadcast.mp4: 1024x576, "
            "24 fps, H.264 with a keyframe every 2 s, AAC 48 kHz stereo at -16 LUFS, audio "
            "exactly as long as video), its quality report (qc.json) and, only if every "
            "quality check passed, broadcast.json, whose presence makes the clip airable.",
            deps=[interpolated_clip, music_track],
            partitions_def=clip_partitions,
            group_name="clips",
            kinds={"video", "s3"},
        )
    ],
    check_specs=quality_check_specs(BROADCAST_CLIP),
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
    yield dg.MaterializeResult(asset_key=BROADCAST_CLIP)


# A clip's stages, in pipeline order (a tuple: the definitions loader takes a module's lists of
# assets for assets of its own, twice over).
CLIP_STAGES = (shot_prompt, raw_take, upscaled_take, interpolated_clip, music_track, broadcast_clip)

clip_job = dg.define_asset_job(
    "clip_job",
    selection=CLIP_STAGES,
    description="Makes clips from prompt to broadcast clip.",
    tags={STAGE_TAG: "clips"},  # at most two at once (dagster.yaml)
)
