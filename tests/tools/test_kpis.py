"""The seed's KPIs from a real SQLite store seeded with known answers: each value and status exactly,
no_data below the minimum, and the window leaves older rows out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from genesys.runtime.settings import Settings
from genesys.runtime.store import Store
from genesys.tools.kpis import Kpi, compute_kpis, kpi_status
from tests.tools.conftest import START, Record

NOW = START + timedelta(days=30)
UP = {"thumbs": "up"}
DOWN = {"thumbs": "down"}
CORRECTED = {"thumbs": "down", "correction": "Use a list comprehension: [f(x) for x in items if x]."}
BAD_RATING = {"rating": 1}
NAMES = [
    "success_rate",
    "response_time",
    "user_satisfaction",
    "learning_rate",
    "knowledge_coverage",
    "technical_precision",
]


def seed(
    record: Record,
    n: int,
    *,
    ago: timedelta,
    feedback: dict[str, Any] | None = None,
    kind: str = "chat",
    **fields: Any,
) -> None:
    for k in range(n):
        record(
            f"question {k}",
            feedback=[feedback] if feedback else None,
            created_at=NOW - ago + timedelta(seconds=k),
            interaction_type=kind,
            **fields,
        )


def by_name(kpis: list[Kpi]) -> dict[str, Kpi]:
    return {k.name: k for k in kpis}


@pytest.mark.parametrize(
    ("value", "target", "comparison", "status"),
    [
        (0.90, 0.90, ">", "ok"),
        (0.855, 0.90, ">", "warning"),
        (0.854, 0.90, ">", "breached"),
        (5.0, 5.0, "<", "ok"),
        (5.25, 5.0, "<", "warning"),
        (5.26, 5.0, "<", "breached"),
        (-0.01, 0.05, ">", "breached"),
    ],
)
def test_status_margin(value: float, target: float, comparison: Any, status: str) -> None:
    assert kpi_status(value, target, comparison, samples=20) == status
    assert kpi_status(value, target, comparison, samples=19) == "no_data"


def test_each_kpi_from_known_answers(store: Store, record: Record, settings: Settings) -> None:
    hours = timedelta(hours=1)
    # The last 24 h: 40 requests.
    seed(record, 18, ago=2 * hours, feedback=UP, latency_ms=1000.0)
    seed(record, 1, ago=3 * hours, feedback=CORRECTED, latency_ms=5200.0)
    seed(record, 1, ago=4 * hours, status="error", latency_ms=50.0)
    seed(record, 19, ago=5 * hours, feedback=UP, kind="code", latency_ms=2000.0)
    seed(record, 1, ago=6 * hours, feedback=BAD_RATING, kind="debug", latency_ms=2000.0)
    seed(record, 3, ago=7 * hours, status="cancelled", latency_ms=9000.0)  # left out of everything
    # Older, in this week but outside 24 h: slow errors that would breach every per-answer KPI.
    seed(record, 10, ago=timedelta(days=2), status="error", latency_ms=60_000.0)
    seed(record, 10, ago=timedelta(days=3), feedback=CORRECTED, kind="code", latency_ms=60_000.0)
    # The week before: 16 of 20 judged answers positive.
    seed(record, 16, ago=timedelta(days=10), feedback=UP)
    seed(record, 4, ago=timedelta(days=11), feedback=DOWN)
    # Before both weeks: ignored.
    seed(record, 20, ago=timedelta(days=20), feedback=DOWN)

    report = compute_kpis(store, settings, now=NOW)
    assert [k.name for k in report.data] == NAMES
    assert report.computed_at == NOW
    kpis = by_name(report.data)

    success = kpis["success_rate"]
    assert (success.samples, success.value, success.status) == (40, pytest.approx(37 / 40), "ok")
    assert (success.target, success.comparison, success.window) == (0.90, ">", "24h")

    latency = kpis["response_time"]  # 39 completed: 18 x 1 s, 20 x 2 s, 1 x 5.2 s; rank 38 -> 2 s
    assert (latency.samples, latency.value, latency.status, latency.unit) == (39, 2.0, "ok", "s")

    satisfaction = kpis["user_satisfaction"]
    assert (satisfaction.samples, satisfaction.value) == (39, pytest.approx(37 / 39))
    assert (satisfaction.target, satisfaction.status) == (0.85, "ok")

    learning = kpis["learning_rate"]  # this week: 37 of 49 judged; the week before: 16 of 20
    assert learning.samples == 20
    assert learning.value == pytest.approx(37 / 49 - 0.8)
    assert (learning.status, learning.window, learning.unit) == ("breached", "7d vs previous 7d", "points")

    coverage = kpis["knowledge_coverage"]
    assert (coverage.samples, coverage.value, coverage.status) == (39, pytest.approx(38 / 39), "ok")

    precision = kpis["technical_precision"]  # 19 of 20 judged code/debug answers: exactly the target
    assert (precision.samples, precision.value, precision.status) == (20, 0.95, "ok")
    assert all(k.definition for k in report.data)


def test_breaches_and_warnings(store: Store, record: Record, settings: Settings) -> None:
    seed(record, 20, ago=timedelta(hours=1), feedback=CORRECTED, kind="code", latency_ms=5200.0)
    seed(record, 20, ago=timedelta(days=8), feedback=UP)
    kpis = by_name(compute_kpis(store, settings, now=NOW).data)
    assert (kpis["success_rate"].value, kpis["success_rate"].status) == (0.0, "breached")
    assert (kpis["response_time"].value, kpis["response_time"].status) == (5.2, "warning")
    assert (kpis["user_satisfaction"].value, kpis["user_satisfaction"].status) == (0.0, "breached")
    assert (kpis["learning_rate"].value, kpis["learning_rate"].status) == (-1.0, "breached")
    assert (kpis["knowledge_coverage"].value, kpis["knowledge_coverage"].status) == (0.0, "breached")
    assert kpis["technical_precision"].status == "breached"


def test_no_data_below_the_minimum(store: Store, record: Record, settings: Settings) -> None:
    seed(record, 19, ago=timedelta(hours=1), feedback=UP, kind="code")
    seed(record, 30, ago=timedelta(days=9), feedback=UP)
    report = compute_kpis(store, settings, now=NOW)
    for kpi in report.data:
        assert (kpi.status, kpi.value) == ("no_data", None), kpi.name
        assert kpi.samples == 19, kpi.name
    # A larger window reaches the older rows; a lower minimum lets 19 samples count.
    wide = by_name(compute_kpis(store, settings, now=NOW, window=timedelta(days=10)).data)
    assert (wide["success_rate"].samples, wide["success_rate"].status) == (49, "ok")
    assert wide["success_rate"].window == "10d"
    low = by_name(compute_kpis(store, settings, now=NOW, min_samples=5).data)
    assert (low["technical_precision"].value, low["technical_precision"].status) == (1.0, "ok")


def test_empty_store(store: Store, settings: Settings) -> None:
    report = compute_kpis(store, settings)
    assert [k.status for k in report.data] == ["no_data"] * 6
    with pytest.raises(ValueError):
        compute_kpis(store, settings, window=timedelta(0))
