"""The alert machinery of the runtime: the background loop, the alerts table (one open alert per rule
and key, across processes), and the firing gauge in ``/metrics``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from genesys.runtime.alert_loop import AlertLoop
from genesys.runtime.metrics import Metrics
from genesys.runtime.store import Store
from genesys.runtime.store.alerts import AlertRow

T0 = datetime(2026, 5, 4, 12, tzinfo=UTC)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'genesys.db'}")
    yield opened
    opened.close()


def fire(
    store: Store, rule: str = "error_rate", key: str = "all", *, now: datetime = T0, **changes: Any
) -> Any:
    values: dict[str, Any] = {
        "kind": "critical_failure",
        "severity": "critical",
        "summary": "errors",
        "value": 0.5,
        "threshold": 0.1,
        "details": {},
    }
    values.update(changes)
    return store.alerts.fire(rule=rule, key=key, now=now, **values)


def test_the_loop_evaluates_at_once_then_every_interval_and_outlives_failures() -> None:
    calls: list[int] = []
    third = threading.Event()

    def evaluate() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database is locked")
        if len(calls) >= 3:
            third.set()

    loop = AlertLoop(evaluate, interval_seconds=0.01)
    loop.start()
    try:
        assert third.wait(timeout=30), "the loop stopped after a failed evaluation"
        assert loop.running
    finally:
        loop.stop()
    assert not loop.running
    done = loop.evaluations
    assert done >= 3
    loop.run_once()  # by hand too, e.g. from a test or a CLI
    assert loop.evaluations == done + 1
    with pytest.raises(ValueError, match="positive"):
        AlertLoop(evaluate, interval_seconds=0)


def test_one_open_alert_per_rule_and_key(store: Store) -> None:
    first, created = fire(store, now=T0)
    assert created and first.state == "firing"
    again, created = fire(store, now=T0 + timedelta(minutes=1), value=0.7, summary="more errors")
    assert not created and again.id == first.id
    assert (again.started_at, again.last_seen_at, again.value, again.summary) == (
        T0,
        T0 + timedelta(minutes=1),
        0.7,
        "more errors",
    )
    other, created = fire(store, key="other", now=T0)
    assert created and other.id != first.id
    assert store.alerts.firing_counts() == {
        "performance_drop": 0,
        "critical_failure": 2,
        "training_needed": 0,
        "anomaly": 0,
    }

    resolved = store.alerts.resolve(first.id, now=T0 + timedelta(minutes=5))
    assert resolved is not None and resolved.resolved_at == T0 + timedelta(minutes=5)
    assert store.alerts.resolve(first.id, now=T0 + timedelta(minutes=6)) is None  # resolved once
    reopened, created = fire(store, now=T0 + timedelta(minutes=10))
    assert created and reopened.id != first.id
    assert [a.id for a in store.alerts.recent(state="resolved")] == [first.id]
    assert {a.id for a in store.alerts.open()} == {other.id, reopened.id}


def test_two_stores_on_one_database_open_one_alert(store: Store, tmp_path: Path) -> None:
    other = Store(f"sqlite:///{tmp_path / 'genesys.db'}")  # another process's view
    try:
        _, created_here = fire(store)
        _, created_there = fire(other)
    finally:
        other.close()
    assert (created_here, created_there) == (True, False)
    assert len(store.alerts.recent()) == 1
    # The database itself refuses a second open alert for a rule and key (two processes inserting at once).
    with pytest.raises(IntegrityError), store.db.session() as session:
        row = AlertRow(
            id="al-twin", rule="error_rate", key="all", open_slot=1, kind="critical_failure",
            severity="critical", state="firing", summary="twin", value=None, threshold=None,
            details={}, actions=[], started_at=T0, last_seen_at=T0, resolved_at=None,
        )  # fmt: skip
        session.add(row)


def test_the_firing_gauge_follows_the_store(store: Store) -> None:
    metrics = Metrics()
    metrics.watch_store(store)
    rendered = metrics.render().decode()
    for kind in ("performance_drop", "critical_failure", "training_needed", "anomaly"):
        assert f'genesys_alerts_firing{{kind="{kind}"}} 0.0' in rendered
    alert, _ = fire(store)
    fire(store, rule="latency_shift", kind="anomaly", severity="warning")
    rendered = metrics.render().decode()
    assert 'genesys_alerts_firing{kind="critical_failure"} 1.0' in rendered
    assert 'genesys_alerts_firing{kind="anomaly"} 1.0' in rendered
    store.alerts.resolve(alert.id, now=T0)
    assert 'genesys_alerts_firing{kind="critical_failure"} 0.0' in metrics.render().decode()


def test_only_the_societys_leader_evaluates_alerts(store: Store, settings: Any) -> None:
    """Replicas on one database: a standby replica's loop neither opens alerts nor acts on them."""
    from types import SimpleNamespace

    from genesys.api.app import _alert_loop
    from genesys.runtime.store.training_runs import TrainingRun

    settings.alerts.enabled = True
    settings.alerts.critical_failure.actions = ["report"]
    store.training_runs.create(TrainingRun(id="run-1", output_dir="/tmp/run-1"))
    store.training_runs.finish("run-1", "failed", error="RuntimeError: boom")
    cycles = SimpleNamespace(leading=False)
    services = SimpleNamespace(settings=settings, store=store, cycles=cycles, controller=None)
    loop = _alert_loop(services)  # type: ignore[arg-type]
    assert loop is not None

    loop.evaluate()
    assert store.alerts.recent() == []

    cycles.leading = True
    loop.evaluate()
    assert [a.rule for a in store.alerts.recent(state="firing")] == ["training_failed"]
