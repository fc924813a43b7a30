"""Telling a person when the system cannot fix something itself: a JSON POST to a webhook
(Slack and Mattermost read `text`, Discord reads `content`; most chat tools take one or the
other). The webhook URL is a secret (Slack's and Discord's carry their token in the path): it
never appears in a log, an error or a record; only its scheme and host do."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from webtv_dagster.secrets import mask_url


def webhook_host(url: str) -> str:
    """What may be shown of a webhook URL: scheme and host, no credentials, path or query."""
    return mask_url(url, keep_path=False)


class AlertError(RuntimeError):
    """The webhook did not take the alert; the message names its host only."""


@dataclass(frozen=True)
class WebhookNotifier:
    url: str
    timeout_seconds: float = 10.0

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
            raise AlertError(
                f"the webhook at {webhook_host(self.url)} answered {error.code}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise AlertError(
                f"the webhook at {webhook_host(self.url)} is unreachable: {reason}"
            ) from None


def notifier(url: str) -> WebhookNotifier | None:
    return WebhookNotifier(url) if url else None
