"""Each channel's live stream, as an external asset that Dagster observes but does not make:
the playout process (`webtv playout`) airs it; this sensor reports what it reports."""

import time

import dagster as dg

from webtv_dagster.defs.partitions import channel_partitions
from webtv_dagster.playout.channel import read_state
from webtv_dagster.settings import Settings

on_air_stream = dg.AssetSpec(
    "on_air_stream",
    description="The channel's live RTMP/HLS stream, aired by `webtv playout <channel>`.",
    deps=["playlist"],
    partitions_def=channel_partitions,
    group_name="air",
    kinds={"rtmp"},
    owners=["team:webtv"],
)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def on_air_stream_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Observes each channel's stream from its playout state: clip on air, its prompt,
    unaired seconds left in the playlist, uptime, and how long since the state last moved."""
    settings = Settings.from_env()
    now = time.time()
    observations = []
    for slug in channel_partitions.get_partition_keys():
        state = read_state(settings.data_dir, slug)
        if state is None:
            continue
        on_air = state.on_air(now)
        observations.append(
            dg.AssetObservation(
                asset_key=on_air_stream.key,
                partition=slug,
                metadata={
                    "on_air": on_air.clip_id if on_air else "(starting)",
                    "prompt": on_air.prompt if on_air else "",
                    "unplayed_seconds": round(state.unplayed_seconds, 1),
                    "aired_through": state.aired_through,
                    "uptime_seconds": round(now - state.publisher_started_at, 1),
                    "seconds_since_update": round(now - state.updated_at, 1),
                },
            )
        )
    if not observations:
        return dg.SensorResult(skip_reason="no channel is on air yet")
    return dg.SensorResult(asset_events=observations)
