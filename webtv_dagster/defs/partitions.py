"""Partitions: one per clip (dynamic, keys `<channel>-<number>`) and one per channel."""

import contextlib
from collections.abc import Mapping

import dagster as dg

from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.settings import Settings

clip_partitions = dg.DynamicPartitionsDefinition(name="clips")

# The tags by which Dagster says which partitions a run targets.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"


def clip_keys_of_run(tags: Mapping[str, str]) -> list[str]:
    """The clip partitions a run targets, from its tags (none: not a clip run)."""
    with contextlib.suppress(ValueError):
        if RANGE_START in tags and RANGE_END in tags:
            start, end = ClipId.parse(tags[RANGE_START]), ClipId.parse(tags[RANGE_END])
            numbers = range(start.number, end.number + 1)
            return [ClipId(channel=start.channel, number=n).key for n in numbers]
        if PARTITION in tags:
            return [ClipId.parse(tags[PARTITION]).key]
    return []


# Read at load time: a broken channels file stops the code location with the file's error.
channel_partitions = dg.StaticPartitionsDefinition(
    [channel.slug for channel in load_channels(Settings.from_env().channels_file).channels]
)

clip_backfill_policy = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=Settings.from_env().clips_per_run
)
