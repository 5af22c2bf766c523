"""The Grafana dashboard (configs/grafana/genesys-dashboard.json) queries only what ``GET /metrics``
exposes: every metric name and label in every panel's PromQL is checked against the text that
``Metrics`` renders (parsed with prometheus_client's parser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from genesys.runtime.metrics import Metrics
from genesys.runtime.store import Feedback, Interaction, Store

DASHBOARD = Path(__file__).resolve().parents[1] / "configs" / "grafana" / "genesys-dashboard.json"
T0 = datetime(2026, 5, 4, 12, tzinfo=UTC)
PROMQL_FUNCTIONS = {
    "sum",
    "rate",
    "increase",
    "histogram_quantile",
    "clamp_min",
    "avg",
    "max",
    "min",
    "count",
}


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'genesys.db'}")
    yield opened
    opened.close()


def exposed(store: Store) -> dict[str, set[str]]:
    """Sample name -> its label names, from a /metrics rendering with one of everything observed."""
    metrics = Metrics()
    metrics.watch_store(store)
    interaction = Interaction(
        id="chatcmpl-1",
        conversation_id="c",
        request_messages=[{"role": "user", "content": "hi"}],
        answer="hello",
        model_version="v1",
        ab_arm="production",
        latency_ms=120,
        ttft_ms=30,
        prompt_tokens=5,
        completion_tokens=3,
        created_at=T0,
    )
    store.interactions.record(interaction)
    store.feedback.upsert(Feedback(interaction_id="chatcmpl-1", thumbs="up"))
    store.alerts.fire(
        rule="error_rate",
        key="all",
        kind="critical_failure",
        severity="critical",
        summary="errors",
        value=0.5,
        threshold=0.1,
        details={},
        now=T0,
    )
    metrics.observe_interaction(interaction)
    metrics.observe_split("v1", "v2", 0.2)
    metrics.observe_kpi("success_rate", 0.95, "ok")
    metrics.observe_http("/v1/chat/completions", 200, 0.1)
    metrics.engine_ready.set(1)
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def references(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, label names, functions) a PromQL expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", " ".join(re.findall(r"\{([^}]*)\}", text))))
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text):
        labels.update(name.strip() for name in group.split(",") if name.strip())
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", "", text)
    functions = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", text))
    metrics = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)) - functions
    return metrics, labels, functions


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return found


def test_every_panel_queries_metrics_that_genesys_exposes(store: Store) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exposed(store)
    used: set[str] = set()
    shown = panels(dashboard)
    assert len(shown) >= 10
    for panel in shown:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            metrics, labels, functions = references(target["expr"])
            where = f"{panel['title']}: {target['expr']}"
            assert metrics, where
            assert metrics <= set(names), f"{where} uses {sorted(metrics - set(names))}, not in /metrics"
            assert functions <= PROMQL_FUNCTIONS, where
            allowed = set().union(*(names[m] for m in metrics))
            assert labels <= allowed, f"{where} uses labels {sorted(labels - allowed)}"
            used |= metrics
    # The essentials are on it: answers, latency, the seed's KPIs, the A/B arms, the alerts.
    assert {
        "genesys_generations_total",
        "genesys_generation_duration_seconds_bucket",
        "genesys_kpi_value",
        "genesys_kpi_status",
        "genesys_ab_traffic_share",
        "genesys_alerts_firing",
        "genesys_feedback_total",
    } <= used


def test_the_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "Genesys"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_reference_check_catches_a_wrong_name() -> None:
    metrics, labels, functions = references(
        'histogram_quantile(0.95, sum by (le, arm) (rate(genesys_latency_bucket{status="error"}[5m]))) / 1e-9'
    )
    assert metrics == {"genesys_latency_bucket"}
    assert labels == {"le", "arm", "status"}
    assert functions == {"histogram_quantile", "sum", "rate"}
