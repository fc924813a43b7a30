"""Clip production in Dagster: the six stages of a clip as assets, the clip job, the sensor that
keeps every channel's buffer full, the channels' clip schedules, and the sensor that counts
clips made and failed per stage for the stack's metrics."""
