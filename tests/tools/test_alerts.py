"""The alert rules and their actions on a real SQLite store, with simulated time (every evaluation
takes ``now``): each of the seed's four kinds fires and resolves, an open alert is not repeated, and
each automatic action really acts (a learning cycle claimed, a rollout rolled back, a report written,
a webhook receiver on loopback notified)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genesys.agents.cycles import CycleRunner
from genesys.agents.scheduler import CycleScheduler
from genesys.runtime.settings import Settings
from genesys.runtime.store import (
    AdapterVersion,
    Alert,
    Feedback,
    Interaction,
    Store,
    TrainingRun,
    utcnow,
)
from genesys.runtime.webhook import WebhookNotifier
from genesys.tools.ab_stats import AbCriteria
from genesys.tools.alert_rules import evaluate_rules
from genesys.tools.alerts import AlertEvaluator, list_alerts, notification
from genesys.tools.rollout import RolloutPolicy, RolloutService
from tests.conftest import free_port
from tests.support.webhook_receiver import Receiver, webhook_receiver

T0 = datetime(2026, 5, 4, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
_ids = itertools.count()


def requests(
    store: Store,
    n: int,
    *,
    at: datetime,
    status: str = "completed",
    latency_ms: float = 100.0,
    model_version: str = "base",
    thumbs: str | None = None,
    correction: str | None = None,
) -> list[Interaction]:
    """``n`` requests, one second apart, ending just before ``at`` (with feedback when given)."""
    made = []
    for k in range(n):
        created = at - timedelta(seconds=n - k)
        interaction = Interaction(
            id=f"chatcmpl-al{next(_ids)}",
            conversation_id=f"conv-{next(_ids)}",
            request_messages=[{"role": "user", "content": "how do I sort a list?"}],
            answer="use sorted()",
            model_version=model_version,
            ab_arm="candidate" if model_version != "base" else None,
            latency_ms=latency_ms,
            status=status,  # type: ignore[arg-type]
            created_at=created,
        )
        store.interactions.record(interaction)
        if thumbs is not None or correction is not None:
            store.feedback.upsert(
                Feedback(
                    interaction_id=interaction.id,
                    thumbs=thumbs,  # type: ignore[arg-type]
                    correction=correction,
                    created_at=created,
                    updated_at=created,
                )
            )
        made.append(interaction)
    return made


@pytest.fixture()
def alert_settings(settings: Settings) -> Settings:
    settings.alerts.webhook_url = None
    return settings


def evaluator(store: Store, settings: Settings, **kwargs: Any) -> AlertEvaluator:
    return AlertEvaluator(store, settings, **kwargs)


def by_rule(store: Store, rule: str) -> list[Alert]:
    return [a for a in store.alerts.recent(limit=1000) if a.rule == rule]


def only(store: Store, rule: str) -> Alert:
    found = by_rule(store, rule)
    assert len(found) == 1, [a.summary for a in found]
    return found[0]


# -- each rule fires and resolves -------------------------------------------------------------------


def test_an_error_spike_is_a_critical_failure_until_the_window_moves_on(
    store: Store, alert_settings: Settings
) -> None:
    requests(store, 15, at=T0, status="completed")
    requests(store, 5, at=T0, status="error")
    alerts = evaluator(store, alert_settings)

    result = alerts.evaluate(T0)
    fired = only(store, "error_rate")
    assert fired.id in [a.id for a in result.fired]
    assert (fired.kind, fired.severity, fired.state) == ("critical_failure", "critical", "firing")
    assert (fired.value, fired.threshold) == (0.25, 0.1)
    assert fired.started_at == fired.last_seen_at == T0 and fired.resolved_at is None
    assert "25% of the requests failed" in fired.summary

    later = T0 + 16 * MINUTE  # the 15-minute window is empty now
    result = alerts.evaluate(later)
    resolved = only(store, "error_rate")
    assert resolved.id in [a.id for a in result.resolved]
    assert (resolved.state, resolved.resolved_at) == ("resolved", later)


def test_below_the_thresholds_nothing_fires(store: Store, alert_settings: Settings) -> None:
    requests(store, 19, at=T0, latency_ms=900)
    requests(store, 1, at=T0, status="error")  # 5% of errors, p95 0.9 s, success rate 95%
    assert evaluate_rules(store, alert_settings, now=T0).conditions == []


def test_slow_answers_are_a_performance_drop(store: Store, alert_settings: Settings) -> None:
    requests(store, 10, at=T0, latency_ms=12_000)
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    fired = only(store, "p95_latency")
    assert (fired.kind, fired.value, fired.threshold) == ("performance_drop", 12.0, 10.0)
    alerts.evaluate(T0 + 16 * MINUTE)
    assert only(store, "p95_latency").state == "resolved"


def test_breached_kpis_fire_one_alert_each(store: Store, alert_settings: Settings) -> None:
    requests(store, 20, at=T0, thumbs="down")
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    fired = {a.key: a for a in by_rule(store, "kpi_breached")}
    assert set(fired) == {"success_rate", "user_satisfaction"}  # response_time (0.1 s) is fine
    assert (fired["success_rate"].value, fired["success_rate"].threshold) == (0.0, 0.9)
    assert fired["user_satisfaction"].threshold == 0.85
    assert "success_rate is breached" in fired["success_rate"].summary

    alerts.evaluate(T0 + timedelta(hours=25))  # out of the 24 h window: no data, no alert
    assert {a.state for a in by_rule(store, "kpi_breached")} == {"resolved"}


def test_a_failed_training_run_fires_until_a_later_run_succeeds(
    store: Store, alert_settings: Settings
) -> None:
    store.training_runs.create(TrainingRun(id="run-1", output_dir="/tmp/run-1"))
    store.training_runs.finish("run-1", "failed", error="Traceback ...\nRuntimeError: CUDA out of memory")
    alerts = evaluator(store, alert_settings)
    now = utcnow() + MINUTE
    alerts.evaluate(now)
    fired = only(store, "training_failed")
    assert (fired.kind, fired.key) == ("critical_failure", "run-1")
    assert fired.summary.endswith("RuntimeError: CUDA out of memory")

    store.training_runs.create(TrainingRun(id="run-2", output_dir="/tmp/run-2"))
    store.training_runs.finish("run-2", "succeeded")
    alerts.evaluate(now + MINUTE)
    assert only(store, "training_failed").state == "resolved"


def register(store: Store, version: str, *, production: bool = False) -> None:
    registry = store.adapters
    registry.register(AdapterVersion(version=version, path=f"/nowhere/{version}", base_model="embedded"),
                      actor="trainer", reason="trained")  # fmt: skip
    registry.transition(version, "validated", actor="validator", reason="passed the gates")
    if production:
        registry.promote(version, actor="deploy", reason="first production version")


def rollout_service(store: Store) -> RolloutService:
    policy = RolloutPolicy(
        stages=[0.2, 0.5, 1.0],
        stage_seconds=[3600.0] * 3,
        criteria=AbCriteria(min_samples_per_arm=20, min_requests_for_errors=20),
    )
    return RolloutService(store, policy)


def test_an_automatic_rollback_fires_an_operators_does_not(store: Store, alert_settings: Settings) -> None:
    register(store, "v1", production=True)
    register(store, "v2")
    service = rollout_service(store)
    first = service.start("v2", actor="deploy", now=T0).rollout
    assert first is not None
    service.abort("the candidate's files cannot be loaded", now=T0 + MINUTE)  # by the deploy controller
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0 + 2 * MINUTE)
    fired = only(store, "rollout_rolled_back")
    assert (fired.kind, fired.key) == ("critical_failure", first.id)
    assert "cannot be loaded" in fired.summary

    register(store, "v3")
    service.start("v3", actor="deploy", now=T0 + 3 * MINUTE)
    service.rollback(actor="ops", reason="not today", now=T0 + 4 * MINUTE)
    alerts.evaluate(T0 + 5 * MINUTE)
    assert only(store, "rollout_rolled_back").state == "resolved"  # the newer rollback was an operator's


def test_corrections_since_the_last_cycle_mean_training_is_needed(
    store: Store, alert_settings: Settings
) -> None:
    alert_settings.alerts.training_needed.corrections = 3
    requests(store, 2, at=T0, thumbs="down", correction="use sorted(items, key=len) instead")
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    assert by_rule(store, "corrections") == []
    requests(store, 1, at=T0 + MINUTE, thumbs="down", correction="the keyword is reverse=True")
    alerts.evaluate(T0 + 2 * MINUTE)
    fired = only(store, "corrections")
    assert (fired.kind, fired.severity, fired.value, fired.threshold) == ("training_needed", "info", 3, 3)

    CycleRunner(alert_settings, store).claim(trigger="operator", requested_by="ops", reason="learn")
    alerts.evaluate(T0 + 3 * MINUTE)  # a cycle learns from them now
    assert only(store, "corrections").state == "resolved"


def test_request_volume_far_from_its_baseline_is_an_anomaly(store: Store, alert_settings: Settings) -> None:
    anomaly = alert_settings.alerts.anomaly
    anomaly.baseline_hours, anomaly.window_minutes, anomaly.min_baseline_requests = 1, 15, 2
    for k in range(4):  # the hour before the window: 3 requests per 15 minutes
        requests(store, 3, at=T0 - 15 * MINUTE - k * 15 * MINUTE)
    requests(store, 30, at=T0)  # 10x the baseline
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    spike = only(store, "request_volume")
    assert (spike.kind, spike.key, spike.value, spike.threshold) == ("anomaly", "spike", 30, 9)

    alerts.evaluate(T0 + 15 * MINUTE)  # nothing since: far below the (now busier) baseline
    volume = {a.key: a for a in by_rule(store, "request_volume")}
    assert volume["spike"].state == "resolved" and volume["drop"].state == "firing"
    assert volume["drop"].value == 0

    alerts.evaluate(T0 + 3 * timedelta(hours=1))  # a quiet baseline is not judged
    assert {a.state for a in by_rule(store, "request_volume")} == {"resolved"}


def test_latency_far_above_its_baseline_is_an_anomaly(store: Store, alert_settings: Settings) -> None:
    requests(store, 10, at=T0 - 30 * MINUTE, latency_ms=200)
    requests(store, 10, at=T0, latency_ms=900)
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    fired = only(store, "latency_shift")
    assert (fired.kind, fired.value, fired.threshold) == ("anomaly", 0.9, 0.4)
    alerts.evaluate(T0 + 16 * MINUTE)
    assert only(store, "latency_shift").state == "resolved"


def test_a_disabled_kind_is_not_evaluated(store: Store, alert_settings: Settings) -> None:
    requests(store, 20, at=T0, status="error")
    alert_settings.alerts.critical_failure.enabled = False
    rules = [c.rule for c in evaluate_rules(store, alert_settings, now=T0).conditions]
    assert rules == ["kpi_breached"]  # the success rate (performance_drop), not the errors


# -- dedup --------------------------------------------------------------------------------------------


def test_an_open_alert_is_refreshed_not_repeated(store: Store, alert_settings: Settings) -> None:
    alert_settings.alerts.performance_drop.enabled = False  # errors breach the success rate too
    requests(store, 20, at=T0, status="error")
    alerts = evaluator(store, alert_settings)
    assert len(alerts.evaluate(T0).fired) == 1
    again = alerts.evaluate(T0 + MINUTE)
    assert again.fired == [] and again.resolved == [] and again.firing == 1
    alert = only(store, "error_rate")
    assert (alert.started_at, alert.last_seen_at) == (T0, T0 + MINUTE)
    assert [a.action for a in alert.actions] == ["rollback", "notify"]  # the actions ran once

    # After it resolves, the same condition opens a new alert.
    alerts.evaluate(T0 + 20 * MINUTE)
    requests(store, 20, at=T0 + 30 * MINUTE, status="error")
    alerts.evaluate(T0 + 30 * MINUTE)
    assert [a.state for a in by_rule(store, "error_rate")] == ["firing", "resolved"]  # newest first
    assert [a.state for a in list_alerts(store, state="firing").alerts] == ["firing"]


def test_two_evaluators_on_one_store_open_one_alert(store: Store, alert_settings: Settings) -> None:
    alert_settings.alerts.performance_drop.enabled = False  # errors breach the success rate too
    requests(store, 20, at=T0, status="error")
    first, second = evaluator(store, alert_settings), evaluator(store, alert_settings)
    assert len(first.evaluate(T0).fired) == 1
    assert second.evaluate(T0).fired == []
    assert len(store.alerts.recent()) == 1


# -- actions ------------------------------------------------------------------------------------------


def test_retrain_starts_a_learning_cycle_through_the_scheduler(
    store: Store, alert_settings: Settings
) -> None:
    scheduler = CycleScheduler(CycleRunner(alert_settings, store), threshold=None)  # not started: claims only
    alerts = evaluator(
        store,
        alert_settings,
        retrain=lambda reason: scheduler.trigger(trigger="alert", requested_by="alerts", reason=reason).id,
    )
    requests(store, 20, at=T0, thumbs="down")
    alerts.evaluate(T0)
    cycle = store.cycles.active()
    assert cycle is not None and (cycle.trigger, cycle.requested_by) == ("alert", "alerts")
    first, second = sorted(by_rule(store, "kpi_breached"), key=lambda a: a.started_at.isoformat() + a.key)
    records = {a.key: a.actions[0] for a in (first, second)}
    done = [r for r in records.values() if r.status == "done"]
    skipped = [r for r in records.values() if r.status == "skipped"]
    # One alert started the cycle; the other found it running (one cycle at a time).
    assert len(done) == 1 and done[0].detail == f"learning cycle {cycle.id} started"
    assert len(skipped) == 1 and cycle.id in skipped[0].detail
    assert cycle.reason.startswith("alert al-")


def test_rollback_rolls_the_serving_candidate_back(store: Store, alert_settings: Settings) -> None:
    register(store, "v1", production=True)
    register(store, "v2")
    started = rollout_service(store).start("v2", actor="deploy", now=T0 - 10 * MINUTE).rollout
    assert started is not None and started.state == "running"
    applied = []
    alerts = evaluator(store, alert_settings, after_rollback=lambda: applied.append(True))
    requests(store, 20, at=T0, status="error", model_version="v2")
    alerts.evaluate(T0)

    rollout = store.rollouts.get(started.id)
    assert (rollout.state, rollout.ended_at) == ("rolled_back", T0)
    last = store.rollouts.events(started.id)[-1]
    assert (last.action, last.actor) == ("rollback", "alerts")
    assert store.adapters.get("v2").state == "rolled_back"
    assert store.adapters.production() is not None and store.adapters.production().version == "v1"  # type: ignore[union-attr]
    assert applied == [True]
    record = only(store, "error_rate").actions[0]
    assert (record.action, record.status) == ("rollback", "done") and started.id in record.detail
    # The alerts' own rollback is not a second critical failure.
    alerts.evaluate(T0 + MINUTE)
    assert by_rule(store, "rollout_rolled_back") == []

    # With no candidate serving, rollback is skipped: production is never rolled back by an alert.
    alerts.evaluate(T0 + 20 * MINUTE)
    requests(store, 20, at=T0 + 30 * MINUTE, status="error")
    alerts.evaluate(T0 + 30 * MINUTE)
    newest = by_rule(store, "error_rate")[0]
    assert (newest.actions[0].action, newest.actions[0].status) == ("rollback", "skipped")
    assert store.adapters.production().version == "v1"  # type: ignore[union-attr]


def test_report_writes_json_and_markdown_and_updates_them_when_resolved(
    store: Store, alert_settings: Settings
) -> None:
    requests(store, 10, at=T0 - 30 * MINUTE, latency_ms=200)
    requests(store, 10, at=T0, latency_ms=900)
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    alert = only(store, "latency_shift")
    folder = alert_settings.data_dir / "metrics" / "alerts"
    report = json.loads((folder / f"{alert.id}.json").read_text())
    assert (report["id"], report["kind"], report["state"], report["value"]) == (
        alert.id,
        "anomaly",
        "firing",
        0.9,
    )
    assert report["details"]["baseline_median_s"] == 0.2
    markdown = (folder / f"{alert.id}.md").read_text()
    assert markdown.startswith(f"# Alert {alert.id}: anomaly") and alert.summary in markdown
    assert [(a.action, a.status) for a in alert.actions] == [("report", "done"), ("notify", "done")]

    alerts.evaluate(T0 + 16 * MINUTE)
    assert json.loads((folder / f"{alert.id}.json").read_text())["state"] == "resolved"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def test_notify_posts_firing_and_resolved_to_the_webhook(
    store: Store, alert_settings: Settings, receiver: Receiver
) -> None:
    alert_settings.alerts.performance_drop.enabled = False  # errors breach the success rate too
    received = receiver.received
    alert_settings.alerts.webhook_url = receiver.url
    requests(store, 20, at=T0, status="error")
    alerts = evaluator(store, alert_settings)
    alerts.evaluate(T0)
    alert = only(store, "error_rate")
    assert len(received) == 1 and received[0]["path"] == "/hooks/genesys"
    body = received[0]["body"]
    assert body["text"].startswith(
        ":rotating_light: [CRITICAL] Genesys critical failure: 100% of the requests"
    )
    assert body["attachments"][0]["title"] == "critical_failure: error_rate"
    assert body["genesys"]["event"] == "firing"
    assert (body["genesys"]["alert"]["id"], body["genesys"]["alert"]["state"]) == (alert.id, "firing")
    assert alert.actions[-1].detail == "webhook answered 200"

    alerts.evaluate(T0 + 20 * MINUTE)
    assert len(received) == 2
    assert received[1]["body"]["genesys"]["event"] == "resolved"
    assert received[1]["body"]["text"].startswith(":white_check_mark: [RESOLVED]")
    assert received[1]["body"]["genesys"]["alert"]["resolved_at"] is not None
    final = only(store, "error_rate")
    assert [(a.action, a.event) for a in final.actions] == [
        ("rollback", "firing"),
        ("notify", "firing"),
        ("notify", "resolved"),
    ]


def test_a_webhook_that_cannot_be_reached_is_recorded_not_raised(
    store: Store, alert_settings: Settings
) -> None:
    alert_settings.alerts.webhook_url = f"http://127.0.0.1:{free_port()}/nobody"
    alert_settings.alerts.webhook_timeout_s = 2
    requests(store, 20, at=T0, status="error")
    evaluator(store, alert_settings).evaluate(T0)
    record = only(store, "error_rate").actions[-1]
    assert (record.action, record.status) == ("notify", "failed")
    assert record.detail.startswith("webhook unreachable")


def test_the_notification_is_slack_shaped_json() -> None:
    alert = Alert(
        id="al-1",
        rule="p95_latency",
        key="all",
        kind="performance_drop",
        severity="warning",
        state="firing",
        summary="p95 latency 12.00 s",
        value=12.0,
        threshold=10.0,
        started_at=T0,
        last_seen_at=T0,
    )
    body = notification(alert, "firing")
    assert json.loads(json.dumps(body)) == body
    assert set(body) == {"text", "attachments", "genesys"}
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}  # type: ignore[index]
    assert (fields["value"], fields["threshold"]) == ("12", "10")
    assert WebhookNotifier("http://127.0.0.1:9/x").timeout_s == 5.0
