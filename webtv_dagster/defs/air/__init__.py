"""On air in Dagster: each channel's playlist and ident, and its live stream observed, with the
watchdog that brings a playout back."""
