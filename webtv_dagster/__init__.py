def hide_dagster_maturity_warnings() -> None:
    """Dagster warns, on every import of the definitions, that features this project chose
    knowingly (backfill policies, partitioned asset checks) are beta or preview: lines that
    tell an operator nothing and bury the one that matters."""
    import warnings

    warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")
