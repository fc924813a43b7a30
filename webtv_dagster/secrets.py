"""What may be shown of a URL or a message that holds secrets: the one place that masks them.

Endpoint URLs come from channel files and the environment, and may carry credentials
(`http://user:key@host/`, `?api_key=...`); every endpoint recorded (S3 records, Dagster
metadata) or logged, and every error about one, goes through `mask_url` or `mask_text`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are credentials by their name.
SECRET_PARAMETER = re.compile(r"key|token|secret|pass|pwd|sig|auth|credential", re.IGNORECASE)


def mask_url(url: str, *, keep_path: bool = True) -> str:
    """The URL without its credentials: user and password become ***, and so does the value of
    any query parameter named like a secret. With keep_path False, only scheme, host and port
    are shown (a webhook's path is itself the secret)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL that can be read: nothing of it is shown
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK if url_secrets(url) else url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    userinfo = f"{MASK}@" if parts.username or parts.password else ""
    netloc = f"{userinfo}{host}{port}"
    if not keep_path:
        return f"{parts.scheme}://{netloc}/<secret path>"
    query = "&".join(
        f"{name}={MASK if SECRET_PARAMETER.search(name) else value}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL as written in it: user, password, secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.username or "", parts.password or ""]
    found += [
        value
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if SECRET_PARAMETER.search(name)
    ]
    return [secret for secret in found if secret]


def mask_text(text: str, secrets: list[str]) -> str:
    """`text` with every occurrence of each secret replaced by ***, longest first."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def write_private(path: Path, data: str | bytes, *, append: bool = False) -> None:
    """Writes a file only its owner can read, whatever mode it had: for files that hold
    secrets (keys, certificates, configurations with stream keys)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "ab" if append else "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
