from webtv_dagster import hide_dagster_maturity_warnings

# Before any definition is made: Dagster warns about beta/preview features as they are used.
hide_dagster_maturity_warnings()
