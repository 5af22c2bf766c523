"""POST a JSON notification to a webhook (Slack incoming webhook, Mattermost, any HTTP receiver).

A receiver that is slow, down or answers an error is logged, never raised: a notification must not
stop the evaluation that sent it. No retries: the next change of the alert sends again.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import BaseModel

log = structlog.get_logger(__name__)


class WebhookResult(BaseModel):
    ok: bool
    detail: str


class WebhookNotifier:
    """Posts JSON bodies to one URL with a timeout."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.url = url
        self.timeout_s = timeout_s

    def post(self, body: dict[str, Any]) -> WebhookResult:
        """POST ``body``; the outcome in words (never raises for the receiver's failures)."""
        import httpx

        try:
            # trust_env off: a proxy configured for the shell must not see internal notifications.
            response = httpx.post(self.url, json=body, timeout=self.timeout_s, trust_env=False)
        except httpx.HTTPError as exc:
            log.warning("webhook.failed", url=self.url, error=str(exc) or type(exc).__name__)
            return WebhookResult(ok=False, detail=f"webhook unreachable: {str(exc) or type(exc).__name__}")
        if response.status_code >= 400:
            log.warning(
                "webhook.refused", url=self.url, status=response.status_code, body=response.text[:200]
            )
            return WebhookResult(ok=False, detail=f"webhook answered {response.status_code}")
        return WebhookResult(ok=True, detail=f"webhook answered {response.status_code}")
