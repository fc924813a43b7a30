"""The count of wrong operator tokens the viewer service was sent, kept in the data folder for
the stack's watchdog, which alerts when it climbs fast (stack/watchdog.py): a module of its
own, so that the watchdog reads it without loading the service's web framework."""

import json
from pathlib import Path


def wrong_tokens_path(data_dir: Path) -> Path:
    """How many wrong operator tokens the service was sent, from all clients: what the stack's
    watchdog alerts on when it climbs fast (stack/watchdog.py)."""
    return data_dir / "viewer-service" / "wrong-operator-tokens.json"


def wrong_tokens_counted(data_dir: Path) -> int:
    """The count in wrong_tokens_path (0: none yet, or unreadable)."""
    try:
        return int(json.loads(wrong_tokens_path(data_dir).read_text())["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
