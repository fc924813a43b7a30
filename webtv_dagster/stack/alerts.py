"""Telling a person when the system cannot fix something itself.

Two kinds of receiver, any number of each:
- a webhook: a JSON POST (Slack and Mattermost read `text`, Discord reads `content`; most chat
  tools take one or the other), WEBTV_ALERT_WEBHOOK_URL;
- any notification service Apprise reaches by URL (mail, ntfy, Telegram, Matrix, PagerDuty,
  Slack, ...), WEBTV_ALERT_URLS.

Every URL is a secret (Slack's and Discord's webhooks carry their token in the path, Telegram's
URLs in the host): none appears in a log, an error or a record; a webhook is named by its
scheme and host, an Apprise URL by its scheme alone.

The stack's watchdog does not send an alert at once: it puts it in an outbox on disk
(`AlertOutbox`, one file an alert), from which it is delivered to each receiver, again and again
with a growing delay while a receiver refuses it, and removed only once every receiver took it
(or after ALERT_RETRY_SECONDS). An alert outlives a receiver that is down and a watchdog that
restarts meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from webtv_dagster.playout.files import write_atomically
from webtv_dagster.secrets import mask_url
from webtv_dagster.settings import Settings

log = logging.getLogger(__name__)

# An alert a receiver refused is sent to it again after 1, 2, 4... s (at most a minute apart),
# for up to an hour after it was raised.
ALERT_FIRST_RETRY_SECONDS = 1.0
ALERT_MAX_RETRY_SECONDS = 60.0
ALERT_RETRY_SECONDS = 3600.0
OUTBOX_LIMIT = 1000  # alerts kept undelivered at most: the oldest go first


def webhook_host(url: str) -> str:
    """What may be shown of a webhook URL: scheme and host, no credentials, path or query."""
    return mask_url(url, keep_path=False)


class AlertError(RuntimeError):
    """A receiver did not take the alert; the message names it without its secret."""


class Notifier(Protocol):
    """One receiver of alerts; `name` is what may be shown of it, `key` what tells it from
    another (a digest of its URL: two receivers may show the same name)."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...

    def send(self, title: str, details: str, severity: str = "error") -> None:
        """Delivers the alert, or raises AlertError."""


def _key_of(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WebhookNotifier:
    url: str
    timeout_seconds: float = 10.0

    @property
    def name(self) -> str:
        return f"the webhook at {webhook_host(self.url)}"

    @property
    def key(self) -> str:
        return _key_of(self.url)

    def send(self, title: str, details: str, severity: str = "error") -> None:
        text = f"[webtv {severity}] {title}\n{details}".strip()
        body = json.dumps(
            {
                "text": text,
                "content": text[:2000],
                "title": title,
                "severity": severity,
                "source": "webtv",
            }
        ).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            raise AlertError(f"{self.name} answered {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AlertError(f"{self.name} is unreachable: {reason}") from None


# Apprise's notification types, by this project's severities.
_APPRISE_TYPES = {"info": "info", "warning": "warning", "error": "failure"}


_SILENCED = logging.Filter("no record's name starts with this")


def _apprise():
    """The apprise module, its own log silenced: it writes the URLs it cannot parse, secrets
    and all (this module says what failed, without them)."""
    import apprise  # only where alerts are sent: the playouts never pay for it

    # A filter, not a level: Apprise sets its logger's level itself as it works.
    logger = logging.getLogger("apprise")
    if _SILENCED not in logger.filters:
        logger.addFilter(_SILENCED)
    return apprise


@dataclass(frozen=True)
class AppriseNotifier:
    """A notification service reached through Apprise by its URL (`ntfys://host/topic`,
    `mailtos://user:password@host`, `tgram://token/chat`, `json://host/path`...)."""

    url: str

    @property
    def name(self) -> str:
        return f"{urlsplit(self.url).scheme or '?'}://<secret> (Apprise)"

    @property
    def key(self) -> str:
        return _key_of(self.url)

    def send(self, title: str, details: str, severity: str = "error") -> None:
        service = _apprise().Apprise()
        if not service.add(self.url):
            raise AlertError(f"{self.name} is not a URL Apprise knows")
        if not service.notify(
            body=details or title,
            title=f"[webtv {severity}] {title}",
            notify_type=_APPRISE_TYPES.get(severity, "info"),
        ):
            raise AlertError(f"{self.name} did not take the alert")


def notifiers(webhook_url: str, apprise_urls: str = "") -> list[Notifier]:
    """The receivers the settings name: the webhook, then each of the comma- or
    space-separated Apprise URLs."""
    found: list[Notifier] = [WebhookNotifier(webhook_url)] if webhook_url else []
    found += [AppriseNotifier(url) for url in apprise_urls.replace(",", " ").split()]
    return found


def notifiers_of(settings: Settings) -> list[Notifier]:
    """The receivers of the settings (WEBTV_ALERT_WEBHOOK_URL, WEBTV_ALERT_URLS)."""
    return notifiers(
        settings.alert_webhook_url.get_secret_value(), settings.alert_urls.get_secret_value()
    )


def send_to_all(
    receivers: Sequence[Notifier], title: str, details: str, severity: str = "error"
) -> list[str]:
    """Sends the alert to every receiver, whichever refuses it; returns why each refusal
    (without its secret): empty when all took it."""
    refusals = []
    for receiver in receivers:
        try:
            receiver.send(title, details, severity)
        except AlertError as error:
            refusals.append(str(error))
    return refusals


def check_notifiers(receivers: Sequence[Notifier]) -> list[str]:
    """What is wrong with the receivers' URLs, one line each (none: they can be used)."""
    apprise_urls = [r for r in receivers if isinstance(r, AppriseNotifier)]
    if not apprise_urls:
        return []  # nothing to ask Apprise, and no need to load it
    apprise = _apprise()
    return [
        f"WEBTV_ALERT_URLS: {receiver.name} is not a URL Apprise knows"
        for receiver in apprise_urls
        if apprise.Apprise.instantiate(receiver.url) is None
    ]


def alerts_folder(data_dir: Path) -> Path:
    return data_dir / "alerts"


class AlertOutbox:
    """Alerts on their way to `receivers`, one JSON file each in `folder`: written whole
    before `put` returns, delivered by `deliver_due` to each receiver that has not taken it
    yet, and removed once all have (or ALERT_RETRY_SECONDS after it was raised, logged). An
    alert that cannot be written (the data folder's disk is full: the alert may say just that)
    is held in memory instead, delivered the same way. Thread-safe: `put` from any thread,
    `deliver_due` from one."""

    def __init__(self, folder: Path, receivers: Sequence[Notifier]):
        self.folder = folder
        self.receivers = list(receivers)
        self.arrived = threading.Event()  # set by put: the deliverer need not wait out its delay
        self._held: list[dict] = []  # alerts the disk could not take
        self._held_lock = threading.Lock()

    def put(self, title: str, details: str, severity: str) -> None:
        record = {
            "title": title,
            "details": details,
            "severity": severity,
            "raised": time.time(),
            "attempts": 0,
            "next_try": 0.0,
            "taken_by": [],
        }
        # Named by when it was raised: delivered oldest first.
        path = self.folder / f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps(record).encode())
        except OSError as error:
            log.error("alert %r held in memory, not on disk (%s)", title, error)
            with self._held_lock:
                self._held = [*self._held, record][-OUTBOX_LIMIT:]
        for old in self._waiting()[:-OUTBOX_LIMIT]:
            log.error("alert outbox over %d: dropped %s", OUTBOX_LIMIT, old.name)
            old.unlink(missing_ok=True)
        self.arrived.set()

    def _waiting(self) -> list[Path]:
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def deliver_due(self) -> float | None:
        """Tries each alert that is due, oldest first; returns the seconds until the next try
        (None: nothing waits)."""
        next_tries = []
        for path in self._waiting():
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError) as error:
                log.error("alert %s cannot be read (%s): dropped", path.name, error)
                path.unlink(missing_ok=True)
                continue
            tried = self._try(record)
            if tried == "done":
                path.unlink(missing_ok=True)
            elif tried == "retry":
                try:
                    write_atomically(path, json.dumps(record).encode())
                except OSError as error:
                    log.error("alert %r: its delivery state not kept (%s)", record["title"], error)
            if tried != "done":
                next_tries.append(record["next_try"])
        with self._held_lock:
            held = list(self._held)
        for record in held:
            if self._try(record) == "done":
                with self._held_lock:
                    self._held.remove(record)
            else:
                next_tries.append(record["next_try"])
        return max(0.0, min(next_tries) - time.time()) if next_tries else None

    def _try(self, record: dict) -> str:
        """Sends the alert to each receiver that has not taken it, if it is due: "done" (all
        took it, or it is given up), "retry" (tried, some refused: its next try is set) or
        "waiting" (not due)."""
        now = time.time()
        if record["next_try"] > now:
            return "waiting"
        refusals = []
        for receiver in self.receivers:
            if receiver.key in record["taken_by"]:
                continue
            try:
                receiver.send(record["title"], record["details"], record["severity"])
                record["taken_by"].append(receiver.key)
            except AlertError as error:
                refusals.append(str(error))
        if not refusals:
            return "done"
        if now - record["raised"] > ALERT_RETRY_SECONDS:
            log.error("alert %r not delivered, given up: %s", record["title"], refusals)
            return "done"
        record["attempts"] += 1
        delay = min(
            ALERT_FIRST_RETRY_SECONDS * 2 ** (record["attempts"] - 1), ALERT_MAX_RETRY_SECONDS
        )
        record["next_try"] = now + delay
        log.warning(
            "alert %r not delivered (%s): again in %.0f s",
            record["title"],
            "; ".join(refusals),
            delay,
        )
        return "retry"

    def deliver_until(self, stop: threading.Event) -> None:
        """Delivers what is due until `stop` is set, waking when an alert is put."""
        while not stop.is_set():
            wait = self.deliver_due()
            self.arrived.wait(timeout=1.0 if wait is None else min(wait, 1.0))
            self.arrived.clear()
