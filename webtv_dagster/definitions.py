"""The code location: everything under webtv_dagster/defs, loaded as one Definitions."""

from pathlib import Path

import dagster as dg

from webtv_dagster import hide_dagster_maturity_warnings

hide_dagster_maturity_warnings()
defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
