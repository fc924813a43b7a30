"""Partitions: one per clip (dynamic, keys `<channel>-<number>`) and one per channel."""

import dagster as dg

from webtv_dagster.channels import load_channels
from webtv_dagster.settings import Settings

clip_partitions = dg.DynamicPartitionsDefinition(name="clips")

# Read at load time: a broken channels file stops the code location with the file's error.
channel_partitions = dg.StaticPartitionsDefinition(
    [channel.slug for channel in load_channels(Settings.from_env().channels_file).channels]
)

clip_backfill_policy = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=Settings.from_env().clips_per_run
)
