"""Names that Dagster's storage is written and read by, each written once: the run tags this
project sets or reads, and the asset keys that code outside the asset's own module queries.

The tags that dagster.yaml's run queue limits (STAGE_TAG, model_tag) are named there too, in
YAML: change both together."""

import dagster as dg

# The job Dagster runs assets in when they are launched from the UI without a job of their own.
IMPLICIT_ASSET_JOB = "__ASSET_JOB"

# Dagster's own tags: which partitions a run targets, its priority, the run it re-executes.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
PRIORITY = "dagster/priority"  # higher dequeues first
PARENT_RUN = "dagster/parent_run_id"  # on a run re-executed from the UI

# This project's.
CHANNEL_TAG = "webtv/channel"  # on runs about one channel (playout_job)
STAGE_TAG = "webtv/stage"  # "clips" on clip runs: dagster.yaml runs two at once
REBOOK_OF = "webtv/rebook_of"  # on a run that finishes the clips of an ended one


def model_tag(family: str) -> str:
    """The tag naming the model a clip run's `family` stage calls (dagster.yaml limits runs
    per remote model with it)."""
    return f"webtv/{family}_model"


def is_model_tag(tag: str) -> bool:
    return tag.startswith("webtv/") and tag.endswith("_model")


# The asset whose partitions are the clips: planners, records and retention query it.
BROADCAST_CLIP = dg.AssetKey("broadcast_clip")
# Each channel's playlist, which its on-air stream depends on.
PLAYLIST = dg.AssetKey("playlist")
