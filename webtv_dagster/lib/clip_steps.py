"""Runs one production stage for every clip partition of a run, reporting each clip apart."""

import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from webtv_dagster.clips import ClipId
from webtv_dagster.lib.partitions import clip_backfill_policy, clip_partitions
from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.production.previews import preview_markdown
from webtv_dagster.production.quality import CHECK_DESCRIPTIONS
from webtv_dagster.production.stages import ClipProduction, StageReport

Stage = Callable[[ClipProduction, ClipId], StageReport]
# Metadata of a stage's step failure: each clip it failed, with the reason. The clips of the
# run that it does not name were made and go on in another run (clip_records.unfinished_clips).
FAILED_CLIPS = "failed_clips"


def stage_retry_policy(studio: Studio) -> dg.RetryPolicy:
    """A model stage that failed is tried again after a delay that doubles, with jitter so that
    runs failing together do not come back together; then it fails for good. Applied by
    materialize_clips (the settings are the studio's, read when the run starts, not when the
    asset is defined); a retry redoes only the clips that failed."""
    return dg.RetryPolicy(
        max_retries=studio.stage_retries,
        delay=studio.stage_retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def clip_asset(*, group_name: str, kinds: set[str], pool: str, deps: Sequence[Any] = ()) -> Any:
    """`@dg.asset` for a model stage of each clip: clip partitions, batched backfills, and the
    Dagster pool (named after the model family) that bounds how many runs call it at once."""
    return dg.asset(
        deps=list(deps),
        pool=pool,
        partitions_def=clip_partitions,
        backfill_policy=clip_backfill_policy,
        group_name=group_name,
        kinds=kinds,
    )


def preview_metadata(report: StageReport, public_url: str) -> dict[str, Any]:
    """The stage's preview image, linked by URL (the image itself is in the bucket)."""
    if report.preview is None:
        return {}
    clip = ClipId.parse(report.clip_id)
    return {"preview": dg.MetadataValue.md(preview_markdown(public_url, clip, report.preview))}


def report_metadata(
    report: StageReport, span: tuple[float, float], public_url: str
) -> dict[str, Any]:
    """What an operator judges and reproduces the clip's stage by, kept small: every field costs
    about 110 bytes of Dagster's storage per clip and stage (the partition names the clip, the
    codecs are the broadcast profile's, the broadcast record holds the checksum)."""
    metadata: dict[str, Any] = {"prompt": report.prompt}
    metadata |= preview_metadata(report, public_url)
    metadata |= {
        "seed": report.seed,
        "backend": report.backend,
        "endpoint": report.endpoint,
        "attempts": report.attempts,
        "work_seconds": round(report.work_seconds, 3),
        # Wall-clock span of the stage, S3 transfers included: benchmarks sum these.
        "stage_started_at": dg.MetadataValue.timestamp(span[0]),
        "stage_finished_at": dg.MetadataValue.timestamp(span[1]),
        "size_bytes": report.size_bytes,
        # Which machine and process made it: with Celery, steps run on many workers.
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "dagster/uri": dg.MetadataValue.path(report.uri),
    }
    if report.media is not None:
        metadata["duration_seconds"] = report.media.duration
        if report.media.video is not None:
            video = report.media.video
            metadata["resolution"] = f"{video.width}x{video.height}"
            metadata["fps"] = video.fps
            metadata["frames"] = video.frames or 0
        if report.media.audio is not None:
            metadata["sample_rate"] = report.media.audio.sample_rate
    metadata.update(report.extra)
    return metadata


def materialize_clips(
    context: dg.AssetExecutionContext,
    studio: Studio,
    media_storage: S3MediaStorage,
    stage: Stage,
    *,
    in_clip_order: bool = False,
    scenes_in_order: bool = False,
    retried: bool = True,
) -> None:
    """Runs `stage` for each clip of the run; every clip that succeeds gets its metadata.

    `in_clip_order` runs clips one after another in clip order (a prompt writer must see the
    prompts of the clips before it); otherwise up to `studio.parallel_clips` run at once, and
    with `scenes_in_order` each scene's clips one after another (a take continues the one
    before it), scenes side by side.
    Failures are collected and raised together once every clip had its chance; a model stage
    (`retried`) is then retried by the studio's `stage_retry_policy`.
    """
    try:
        _materialize_clips(context, studio, media_storage, stage, in_clip_order, scenes_in_order)
    except Exception as error:
        policy = stage_retry_policy(studio)
        if not retried or context.retry_number >= policy.max_retries:
            raise
        delay = max(0.0, policy.calculate_delay(context.retry_number + 1))
        raise dg.RetryRequested(policy.max_retries, seconds_to_wait=delay) from error


# A clip's stage done (its report, and when it started and ended) or its error.
Outcome = tuple[StageReport, tuple[float, float]] | Exception


def _materialize_clips(
    context: dg.AssetExecutionContext,
    studio: Studio,
    media_storage: S3MediaStorage,
    stage: Stage,
    in_clip_order: bool,
    scenes_in_order: bool,
) -> None:
    store = media_storage.store()
    public_url = media_storage.public_url
    made: dict[str, dict[str, Any]] = _made_by_earlier_attempts(context)
    clips = sorted(
        (ClipId.parse(key) for key in context.partition_keys if key not in made),
        key=lambda clip: clip.number,
    )

    productions: dict[str, ClipProduction] = {}

    def run(clip: ClipId) -> tuple[StageReport, tuple[float, float]]:
        started = time.time()
        report = stage(productions[clip.channel], clip)
        return report, (started, time.time())

    def run_in_turn(chain: list[ClipId]) -> list[Outcome]:
        """Each clip's report and span, or its error; after a failure, the rest of the chain
        is not made (each clip continues the one before it)."""
        outcomes: list[Outcome] = []
        for before, clip in zip([None, *chain], chain, strict=False):
            if outcomes and isinstance(outcomes[-1], Exception):
                outcomes.append(
                    RuntimeError(f"not made: {before.key}, before it in its scene, failed")
                )
                continue
            try:
                outcomes.append(run(clip))
            except Exception as error:  # reported per clip below
                outcomes.append(error)
        return outcomes

    workers = 1 if in_clip_order else max(1, min(studio.parallel_clips, len(clips)))
    failures: dict[str, str] = {}
    earlier = set(made)
    with contextlib.ExitStack() as owned, ThreadPoolExecutor(max_workers=workers) as pool:
        # Each channel's backends are built once for the step (not once per clip), and closed
        # with it.
        for slug in {clip.channel for clip in clips}:
            productions[slug] = owned.enter_context(studio.production(store, slug))

        def chain_of(clip: ClipId) -> tuple[str, int]:
            scene, _ = productions[clip.channel].channel.scene_of(clip.number)
            return clip.channel, scene if scenes_in_order else clip.number

        chains: dict[tuple[str, int], list[ClipId]] = {}
        for clip in clips:
            chains.setdefault(chain_of(clip), []).append(clip)
        futures = [(chain, pool.submit(run_in_turn, chain)) for chain in chains.values()]
        outcomes = {
            clip.key: outcome
            for chain, future in futures
            for clip, outcome in zip(chain, future.result(), strict=True)
        }
        for clip in clips:
            try:
                outcome = outcomes[clip.key]
                if isinstance(outcome, Exception):
                    raise outcome
                report, span = outcome
            except Exception as error:  # reported per clip below, raised once for the run
                failures[clip.key] = f"{type(error).__name__}: {error}"
                context.log.error(f"{clip.key}: {failures[clip.key]}")
                continue
            if report.quality is not None:
                context.log_event(quality_evaluation(context.asset_key, report, public_url))
                if not report.quality.passed:
                    failures[clip.key] = report.quality.summary()
                    context.log.error(f"{clip.key}: {failures[clip.key]} ({report.uri})")
                    continue
            made[clip.key] = report_metadata(report, span, public_url)
    if failures:
        # A failed step records no materialization for its partitions: record the clips
        # that were made one by one, so only the failed ones show (and count) as failed.
        for key, metadata in made.items():
            if key not in earlier:  # those are recorded already
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=context.asset_key, partition=key, metadata=metadata
                    )
                )
        raise dg.Failure(
            description=f"{len(failures)} of {len(context.partition_keys)} clip(s) failed: "
            + "; ".join(f"{key}: {why}" for key, why in failures.items()),
            metadata={FAILED_CLIPS: dg.MetadataValue.json(failures)},
        )
    for key, metadata in made.items():
        context.add_asset_metadata(metadata, partition_key=key)


def _made_by_earlier_attempts(context: dg.AssetExecutionContext) -> dict[str, dict[str, Any]]:
    """On a retry, the clips this run already made, with their metadata (materialize_clips
    records each clip it made when others fail), so that only the failed ones are redone."""
    if context.retry_number == 0:
        return {}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=context.partition_keys),
        limit=4 * len(context.partition_keys),
    ).records
    return {
        record.partition_key: dict(record.asset_materialization.metadata)
        for record in records
        if record.run_id == context.run.run_id and record.partition_key
    }


QUALITY_CHECK = "broadcast_quality"


def quality_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    """One blocking check per clip partition that holds all seven quality checks: seven
    evaluations per clip took three quarters of a clip's Dagster storage."""
    description = "All of: " + " ".join(
        f"{name}: {text}" for name, text in CHECK_DESCRIPTIONS.items()
    )
    return [
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset=asset,
            blocking=True,
            partitions_def=clip_partitions,
            description=description,
        )
    ]


def quality_evaluation(
    asset_key: dg.AssetKey, report: StageReport, public_url: str
) -> dg.AssetCheckEvaluation:
    """The clip's quality report as the check's evaluation for its partition: each check's
    verdict and measurement; a failed clip also carries its object and preview."""
    quality = report.quality
    metadata: dict[str, Any] = {
        check.name: f"{'passed' if check.passed else 'FAILED'}: {check.reason}"
        for check in quality.checks
    }
    if not quality.passed:
        metadata["dagster/uri"] = dg.MetadataValue.path(report.uri)
        metadata |= preview_metadata(report, public_url)
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=QUALITY_CHECK,
        passed=quality.passed,
        partition=report.clip_id,
        metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=True,
        description=quality.summary(),
    )
