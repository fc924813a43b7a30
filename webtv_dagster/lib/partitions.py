"""Partitions: one per clip (dynamic, keys `<channel>-<number>`) and one per channel."""

import contextlib
from collections.abc import Mapping

import dagster as dg

from webtv_dagster.channels import ChannelsFile
from webtv_dagster.clips import ClipId
from webtv_dagster.lib.names import PARTITION, RANGE_END, RANGE_START

clip_partitions = dg.DynamicPartitionsDefinition(name="clips")


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


# One per channel of the channels file, kept in step with the file by the clip sensor at every
# tick (channel_partition_requests): nothing about the channels is frozen at import.
channel_partitions = dg.DynamicPartitionsDefinition(name="channels")


def channel_partition_requests(
    instance: dg.DagsterInstance, channels: ChannelsFile
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """What brings the channel partitions in step with the file: a partition added for each new
    channel, deleted for each channel it no longer has (their clips and history stay)."""
    wanted = [channel.slug for channel in channels.channels]
    known = set(instance.get_dynamic_partitions(channel_partitions.name))
    missing = [slug for slug in wanted if slug not in known]
    gone = sorted(known - set(wanted))
    return [
        *([channel_partitions.build_add_request(missing)] if missing else []),
        *([channel_partitions.build_delete_request(gone)] if gone else []),
    ]


# Backfills launched from the UI run this many clips per run (the runs the sensors and
# schedules book have WEBTV_CLIPS_PER_RUN clips; a policy is fixed when the asset is defined).
clip_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=8)
