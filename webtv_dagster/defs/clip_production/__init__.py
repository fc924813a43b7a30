"""Clip production in Dagster: the six stages of a clip as assets, the clip job, the sensor that
keeps every channel's buffer full, and the channels' clip schedules."""
