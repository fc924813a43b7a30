"""webtv-dagster: an AI-generated TV channel that runs around the clock, orchestrated by
Dagster.

The package root holds what every wing shares: the settings, the channels file, model
endpoints, prompt rules, clip ids, storage, the broadcast profile, secrets masking and the
public site's folders. The wings, lowest first (none imports a higher one): media/ and
backends/ (tools), spaces/ (local model Spaces), production/, playout/, audience/, stack/,
lib/ (Dagster helpers), defs/ (Dagster definitions); definitions.py and cli.py on top.
"""


def hide_dagster_maturity_warnings() -> None:
    """Dagster warns, on every import of the definitions, that features this project chose
    knowingly (backfill policies, partitioned asset checks) are beta or preview: lines that
    tell an operator nothing and bury the one that matters."""
    import warnings

    warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")
