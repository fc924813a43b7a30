"""Dagster definitions only, sorted by concept: clip production, air, viewers' requests,
housekeeping and alerts, with the code location's resources (resources.py). Everything they
call is plain Python in the wings below, or Dagster-aware helpers in lib/."""

from webtv_dagster import hide_dagster_maturity_warnings

# Before any definition is made: Dagster warns about beta/preview features as they are used.
hide_dagster_maturity_warnings()
