"""Where viewers' shot requests are kept (production/shot_requests.py's SQLite database), and
how many each channel has waiting and decided lately: read without the queue's moderation
code, so that the stack's metrics (read at every scrape, by the light watchdog process) load
none of it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


def queue_path(data_dir: Path) -> Path:
    return data_dir / "requests.sqlite3"


QUEUED = ("pending", "approved")  # waiting: all of them are counted
DECIDED = ("scheduled", "refused")  # decisions: those of a recent window are counted


def request_counts(
    path: Path, slugs: Sequence[str], decided_since: float
) -> dict[tuple[str, str], int]:
    """(channel, status): how many requests of each channel wait (QUEUED) and how many were
    decided since `decided_since` (DECIDED); empty when there is no queue yet. Each count is
    a range of the queue's (channel, status, decided_at) index: the cost does not grow with
    the decisions kept. sqlite3.Error when the database cannot be read now."""
    if not path.exists():  # no channel has taken a request yet: nothing to make
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        counts = {}
        for slug in slugs:
            for status in QUEUED:
                counts[slug, status] = db.execute(
                    "SELECT COUNT(*) FROM requests WHERE channel = ? AND status = ?",
                    (slug, status),
                ).fetchone()[0]
            for status in DECIDED:
                counts[slug, status] = db.execute(
                    "SELECT COUNT(*) FROM requests WHERE channel = ? AND status = ? "
                    "AND decided_at >= ?",
                    (slug, status, decided_since),
                ).fetchone()[0]
    finally:
        db.close()
    return counts
