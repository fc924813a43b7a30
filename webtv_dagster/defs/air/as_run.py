"""Each day's as-run log, as an asset: what every channel's playout wrote of the day
(playout/as_run.py) summed up in the UI, with a CSV per channel in the bucket, once the day
(UTC) is over; a backfill or a rerun of a day writes it again from the playouts' files."""

import dagster as dg

from webtv_dagster.lib.resources import S3MediaStorage, Studio
from webtv_dagster.playout.as_run import AsRunLog, AsRunSummary, publish_as_run
from webtv_dagster.playout.state import PlayoutFolder

# A partition a day (UTC), from before the first release: a day without a log records nothing.
as_run_days = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")


@dg.asset(partitions_def=as_run_days, group_name="air", kinds={"s3", "csv"})
def as_run_log(
    context: dg.AssetExecutionContext, studio: Studio, media_storage: S3MediaStorage
) -> dg.MaterializeResult:
    """What went out on each channel that day, clip by clip (aired whole, cut on air, or
    skipped, with the reason), from its publisher's reports: `<channel>/as-run/<day>.csv`."""
    day = context.partition_key
    store = media_storage.store()
    rows = [
        "| channel | new clips | replays | cut | skipped | requested | on air (h) | filler (s) "
        "| most watching | CSV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    metadata: dict = {}
    for slug in studio.slugs():
        folder = PlayoutFolder.of(studio.data_folder, slug).as_run
        entries = AsRunLog(folder, studio.as_run_days).entries(day)
        if not entries:
            continue
        summary = AsRunSummary.of(entries)
        most_watching = "-" if summary.peak_viewers is None else summary.peak_viewers
        stored = publish_as_run(store, slug, day, entries, studio.as_run_days)
        rows.append(
            f"| {slug} | {summary.clips_aired} | {summary.replays} | {summary.cut} "
            f"| {summary.skipped} | {summary.requested} | {summary.seconds_on_air / 3600:.2f} "
            f"| {summary.filler_seconds:.0f} | {most_watching} | {stored.uri} |"
        )
        metadata[f"{slug}_entries"] = len(entries)
        metadata[f"{slug}_csv"] = dg.MetadataValue.path(stored.uri)
    metadata["channels"] = len(rows) - 2
    metadata["summary"] = dg.MetadataValue.md("\n".join(rows))
    return dg.MaterializeResult(metadata=metadata)


as_run_job = dg.define_asset_job(
    "as_run_job", selection=[as_run_log], description="Gathers a day's as-run logs."
)

# Each day's log a quarter of an hour after it ends (UTC): the clips airing across midnight
# are written by then.
as_run_schedule = dg.build_schedule_from_partitioned_job(
    as_run_job,
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
