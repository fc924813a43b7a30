"""Housekeeping in Dagster: clips added by hand, clips taken off air, and retention."""
