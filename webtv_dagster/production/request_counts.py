"""Where viewers' shot requests are kept (production/shot_requests.py's SQLite database), and
how many each channel holds in each status: read without the queue's moderation code, so that
the stack's metrics (read at every scrape, by the light watchdog process) load none of it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def queue_path(data_dir: Path) -> Path:
    return data_dir / "requests.sqlite3"


def request_counts(path: Path) -> dict[tuple[str, str], int]:
    """(channel, status): count of the requests kept (the queue's `prune` bounds them); empty
    when there is no queue yet. sqlite3.Error when the database cannot be read now."""
    if not path.exists():  # no channel has taken a request yet: nothing to make
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        rows = db.execute(
            "SELECT channel, status, COUNT(*) FROM requests GROUP BY channel, status"
        ).fetchall()
    finally:
        db.close()
    return {(channel, status): count for channel, status, count in rows}
