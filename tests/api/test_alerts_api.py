"""Alerts in a real server on loopback: the background evaluator fires an alert on the server's store,
``GET /v1/alerts`` serves it (operator role), ``/metrics`` counts it, the webhook receives it, and it
resolves when its condition clears. Plus the app's wiring of the actions, and no evaluator when
``alerts.enabled`` is off."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from genesys.agents.cycles import CycleRunner
from genesys.agents.scheduler import CycleScheduler
from genesys.api.app import _alert_loop
from genesys.api.deps import Services
from genesys.runtime.settings import ApiKey, Settings
from genesys.runtime.store import Interaction, Store, utcnow
from tests.conftest import LiveServer, start_live_server
from tests.support.webhook_receiver import Receiver, webhook_receiver

USER_KEY = "user-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"
FIELDS = {
    "id",
    "rule",
    "kind",
    "severity",
    "state",
    "summary",
    "value",
    "threshold",
    "started_at",
    "last_seen_at",
    "resolved_at",
    "actions",
}
KINDS = {"performance_drop", "critical_failure", "training_needed", "anomaly"}


def seed_errors(store: Store, n: int = 20) -> None:
    """``n`` failed requests in the last minute: an error spike."""
    now = utcnow()
    for k in range(n):
        store.interactions.record(
            Interaction(
                id=f"chatcmpl-alert-{k}",
                conversation_id=f"conv-{k}",
                request_messages=[{"role": "user", "content": "hi"}],
                answer="",
                model_version="base",
                latency_ms=50,
                status="error",
                error="engine failed",
                created_at=now - timedelta(seconds=60 - k),
            )
        )


def get_alerts(server: LiveServer, key: str | None = OPERATOR_KEY, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.api}/alerts", headers=headers, params=params, timeout=30)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture()
def alerting_server(settings: Settings, llama_engine: Any, receiver: Receiver) -> Iterator[LiveServer]:
    """A server with API keys, an error spike in its store, and its alert rules every 0.2 s."""
    settings.auth.keys = [
        ApiKey(name="dev", role="user", key=USER_KEY),
        ApiKey(name="ops", role="operator", key=OPERATOR_KEY),
    ]
    settings.alerts.enabled = True
    settings.alerts.evaluate_seconds = 0.2
    settings.alerts.webhook_url = receiver.url
    settings.alerts.performance_drop.actions = ["notify"]  # no learning cycle in this test's server
    store = Store(settings.database_url)
    seed_errors(store)
    store.close()
    yield from start_live_server(settings, llama_engine)


def test_the_server_raises_serves_and_resolves_an_alert(
    alerting_server: LiveServer, receiver: Receiver
) -> None:
    def firing_error_rate() -> dict[str, Any] | None:
        alerts = get_alerts(alerting_server, state="firing").json()["alerts"]
        # The alert is stored as it fires; its actions are recorded once they have run.
        return next((a for a in alerts if a["rule"] == "error_rate" and len(a["actions"]) == 2), None)

    alert = wait_for(firing_error_rate, "the error-rate alert")
    response = get_alerts(alerting_server)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"alerts"}
    for each in body["alerts"]:
        assert set(each) == FIELDS and each["kind"] in KINDS
    assert (alert["kind"], alert["severity"], alert["state"]) == ("critical_failure", "critical", "firing")
    assert (alert["value"], alert["threshold"], alert["resolved_at"]) == (1.0, 0.1, None)
    started = datetime.fromisoformat(alert["started_at"])
    assert started.tzinfo is not None and datetime.fromisoformat(alert["last_seen_at"]) >= started
    assert [(a["action"], a["status"]) for a in alert["actions"]] == [
        ("rollback", "skipped"),
        ("notify", "done"),
    ]
    started_at = [a["started_at"] for a in body["alerts"]]
    assert started_at == sorted(started_at, reverse=True)  # newest first
    assert get_alerts(alerting_server, state="resolved").json() == {"alerts": []}

    scraped = httpx.get(
        f"{alerting_server.base_url}/metrics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=30
    ).text
    assert 'genesys_alerts_firing{kind="critical_failure"} 1.0' in scraped
    assert 'genesys_alerts_firing{kind="anomaly"} 0.0' in scraped

    notified = [b for b in receiver.bodies() if b["genesys"]["alert"]["id"] == alert["id"]]
    assert [b["genesys"]["event"] for b in notified] == ["firing"]
    assert notified[0]["text"].startswith(":rotating_light: [CRITICAL]")

    # Raise the bar: the condition clears at the next evaluation and the alert resolves.
    alerting_server.settings.alerts.critical_failure.error_rate = 1.0

    def resolved() -> dict[str, Any] | None:
        alerts = get_alerts(alerting_server, state="resolved").json()["alerts"]
        return next((a for a in alerts if a["id"] == alert["id"]), None)

    closed = wait_for(resolved, "the alert to resolve")
    assert closed["state"] == "resolved" and closed["resolved_at"] is not None
    assert wait_for(
        lambda: any(
            b["genesys"]["event"] == "resolved" and b["genesys"]["alert"]["id"] == alert["id"]
            for b in receiver.bodies()
        ),
        "the resolved notification",
    )
    # One alert for the spike, however many evaluations ran.
    assert [a["id"] for a in get_alerts(alerting_server).json()["alerts"] if a["rule"] == "error_rate"] == [
        alert["id"]
    ]


def test_alerts_need_an_operator_key_and_a_known_state(alerting_server: LiveServer) -> None:
    missing = get_alerts(alerting_server, key=None)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    forbidden = get_alerts(alerting_server, key=USER_KEY)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "permission_error"
    bad = get_alerts(alerting_server, state="burning")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "query.state"
    assert get_alerts(alerting_server, limit="0").status_code == 400


def test_the_app_wires_retrain_to_the_scheduler_and_no_loop_when_disabled(settings: Settings) -> None:
    store = Store(settings.database_url)
    try:
        scheduler = CycleScheduler(CycleRunner(settings, store), threshold=None)  # claims; runs nothing
        services = cast(
            Services, SimpleNamespace(settings=settings, store=store, cycles=scheduler, controller=None)
        )
        assert _alert_loop(services) is None  # alerts.enabled is off in the tests' settings

        settings.alerts.enabled = True
        settings.alerts.critical_failure.enabled = False
        loop = _alert_loop(services)
        assert loop is not None and loop.interval_seconds == 60
        seed_errors(store)  # a success rate of 0: a performance drop, whose first action is retrain
        loop.run_once()
        cycle = store.cycles.active()
        assert cycle is not None and (cycle.trigger, cycle.requested_by) == ("alert", "alerts")
        retrain = store.alerts.recent(state="firing")[0].actions[0]
        assert (retrain.action, retrain.status) == ("retrain", "done") and cycle.id in retrain.detail
    finally:
        store.close()
