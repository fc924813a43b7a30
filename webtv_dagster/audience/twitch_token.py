"""The chat bot's OAuth token kept valid without a person: Twitch's user access tokens expire
(after about four hours), and its refresh-token flow trades the application's refresh token for a
new access token (and often a new refresh token) at any time.

A channel whose `requests.chat.refresh` names its application (client id, the variables of its
client secret and of the bot's refresh token) gets a `TokenKeeper`: a thread of the bot that

- validates the token at start and every hour, as Twitch asks of every application
  (GET /oauth2/validate: how long it has left, or 401 when it expired or was revoked);
- refreshes it ahead of expiry (a quarter of its life, at most 10 minutes, before it ends), and at
  once when a login is refused (an expired or revoked token: `refresh_now`);
- keeps the newest tokens in the data folder (`chat/<slug>/token.json`, mode 0600, written
  whole or not at all), so a restarted bot logs in with them rather than with the environment's
  spent ones; a new refresh token put in the environment replaces them.

Nothing here logs, raises or records a token: errors quote Twitch's message field only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from webtv_dagster.channels import TokenRefresh

log = logging.getLogger(__name__)

VALIDATE_EVERY_SECONDS = 3600.0  # Twitch: validate tokens on start and hourly
EARLIEST_REFRESH_SECONDS = 600.0  # a token is refreshed at most this long before it expires
HTTP_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS = 2.0, 300.0


class TokenRefreshError(RuntimeError):
    """Twitch did not give a new token; the message says why, never the token."""


@dataclass
class Grant:
    """The tokens in use. `source` fingerprints the environment's refresh token these descend
    from: a different one in the environment (an operator's new authorization) wins over them."""

    access_token: str
    refresh_token: str
    expires_at: float | None  # wall-clock time; None: not known yet (validate)
    source: str


def fingerprint(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:16]


def token_path(data_dir: Path, slug: str) -> Path:
    return data_dir / "chat" / slug / "token.json"


def load_grant(path: Path, access_token: str, refresh_token: str) -> Grant:
    """The tokens to start with: those kept at `path` when they descend from the environment's
    refresh token, else the environment's."""
    source = fingerprint(refresh_token)
    try:
        kept = Grant(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        kept = None
    if kept is not None and kept.source == source:
        return kept
    return Grant(access_token, refresh_token, None, source)


def save_grant(path: Path, grant: Grant) -> None:
    """Writes the tokens readable by their owner alone, replacing the file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".token-")
    try:
        with os.fdopen(descriptor, "w") as out:  # mkstemp's file is 0600
            json.dump(asdict(grant), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _twitch_message(error: urllib.error.HTTPError) -> str:
    """Twitch's reason for an error answer ({"status": 400, "message": "Invalid refresh
    token"}), bounded; never the request."""
    try:
        said = json.loads(error.read(4096) or b"{}")
    except ValueError:
        said = {}
    message = said.get("message") if isinstance(said, dict) else None
    return f"HTTP {error.code}" + (f": {str(message)[:200]}" if message else "")


class TokenKeeper:
    """Keeps a channel's bot token valid (see the module's docstring). `token()` is the
    `oauth:...` line the bot logs in with; `run()` is the keeper's thread."""

    def __init__(
        self, slug: str, refresh: TokenRefresh, client_secret: str, grant: Grant, store: Path
    ):
        self.slug, self.refresh, self._client_secret = slug, refresh, client_secret
        self._grant, self._store = grant, store
        self._lock = threading.Lock()
        self._refresh_asked = threading.Event()
        self._idle = threading.Event()  # set while no refresh is under way
        self._idle.set()
        self._lifetime = 4 * 3600.0  # a Twitch token's life, until a refresh says

    def token(self) -> str:
        with self._lock:
            return "oauth:" + self._grant.access_token

    def refresh_now(self) -> None:
        """A login was refused: the token expired or was revoked."""
        self._idle.clear()
        self._refresh_asked.set()

    def ready(self) -> bool:
        """Whether no refresh is asked for or under way (a login now uses the newest token)."""
        return self._idle.is_set()

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: validates on start and hourly, refreshes when due or asked, retries a
        failed refresh with backoff."""
        next_validation, retry_wait = 0.0, FIRST_RETRY_SECONDS
        while not stop.is_set():
            now = time.time()
            asked = self._refresh_asked.is_set()
            try:
                if asked or self._due(now):
                    self._refresh_asked.clear()
                    self._refresh()
                elif now >= next_validation:
                    next_validation = now + VALIDATE_EVERY_SECONDS
                    if not self._validate():
                        self._refresh()
                retry_wait = FIRST_RETRY_SECONDS
                self._idle.set()
            except TokenRefreshError as error:
                log.warning(
                    "chat bot of %s: its token could not be refreshed (%s); trying again in %g s",
                    self.slug,
                    error,
                    retry_wait,
                )
                self._refresh_asked.set()
                stop.wait(retry_wait)
                retry_wait = min(retry_wait * 2, LAST_RETRY_SECONDS)
                continue
            self._refresh_asked.wait(min(self._seconds_to_next(next_validation), 60.0))

    def _due(self, now: float) -> bool:
        expires_at = self._grant.expires_at
        return expires_at is not None and now >= expires_at - self._lead

    def _seconds_to_next(self, next_validation: float) -> float:
        now, expires_at = time.time(), self._grant.expires_at
        due = next_validation if expires_at is None else expires_at - self._lead
        return max(0.05, min(next_validation, due) - now)

    @property
    def _lead(self) -> float:
        return min(EARLIEST_REFRESH_SECONDS, self._lifetime / 4)

    def _validate(self) -> bool:
        """Asks Twitch how long the token has left; False when it no longer holds."""
        request = urllib.request.Request(
            self.refresh.validate_url,
            headers={"Authorization": f"OAuth {self._grant.access_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as answer:
                said = json.loads(answer.read(65536))
        except urllib.error.HTTPError as error:
            if error.code == 401:
                log.info("chat bot of %s: its token no longer holds; refreshing it", self.slug)
                return False
            raise TokenRefreshError(f"validation failed: {_twitch_message(error)}") from None
        except (OSError, ValueError) as error:
            raise TokenRefreshError(f"validation failed: {type(error).__name__}") from None
        expires_in = said.get("expires_in") if isinstance(said, dict) else None
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            return False
        self._set(self._grant.access_token, self._grant.refresh_token, float(expires_in))
        return True

    def _refresh(self) -> None:
        form = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "refresh_token": self._grant.refresh_token,
                "client_id": self.refresh.client_id,
                "client_secret": self._client_secret,
            }
        ).encode()
        request = urllib.request.Request(
            self.refresh.token_url,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as answer:
                said = json.loads(answer.read(65536))
        except urllib.error.HTTPError as error:
            hint = (
                "; authorize the bot again and put the new refresh token in "
                f"${self.refresh.refresh_token_env} (docs/viewer-requests.md)"
                if error.code in (400, 401)
                else ""
            )
            raise TokenRefreshError(f"refresh refused: {_twitch_message(error)}{hint}") from None
        except (OSError, ValueError) as error:
            raise TokenRefreshError(f"refresh failed: {type(error).__name__}") from None
        access, refresh = said.get("access_token"), said.get("refresh_token")
        expires_in = said.get("expires_in")
        if not (isinstance(access, str) and access.isprintable() and " " not in access):
            raise TokenRefreshError("refresh answered without a usable access_token")
        if not isinstance(refresh, str) or not refresh:
            refresh = self._grant.refresh_token  # not rotated
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            expires_in = None
        if expires_in is not None:
            self._lifetime = float(expires_in)
        self._set(access, refresh, expires_in)
        log.info(
            "chat bot of %s: token refreshed%s",
            self.slug,
            f" (valid {expires_in:.0f} s)" if expires_in else "",
        )

    def _set(self, access: str, refresh: str, expires_in: float | None) -> None:
        now = time.time()
        with self._lock:
            expires_at = None if expires_in is None else now + expires_in
            self._grant = Grant(access, refresh, expires_at, self._grant.source)
        save_grant(self._store, self._grant)
