"""``GET /v1/kpis`` on a real server on loopback: the six KPIs from the server's store, and the
operator role required when API keys are configured."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from genesys.runtime.settings import ApiKey
from genesys.runtime.store import Feedback, Interaction, new_interaction_id, utcnow
from tests.conftest import LiveServer, start_live_server

USER_KEY = "user-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"
NAMES = [
    "success_rate",
    "response_time",
    "user_satisfaction",
    "learning_rate",
    "knowledge_coverage",
    "technical_precision",
]


def get_kpis(server: LiveServer, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.api}/kpis", headers=headers, timeout=30)


def test_kpis_from_the_store(live_server: LiveServer) -> None:
    store = live_server.services.store
    now = utcnow()
    for k in range(20):
        interaction = Interaction(
            id=new_interaction_id("chat"),
            conversation_id=f"conv-{k}",
            request_messages=[{"role": "user", "content": f"question {k}"}],
            answer="answer",
            model_version="base",
            latency_ms=1500.0,
            created_at=now - timedelta(minutes=k + 1),
        )
        store.interactions.record(interaction)
        store.feedback.upsert(Feedback(interaction_id=interaction.id, thumbs="up" if k else "down"))

    response = get_kpis(live_server)  # no API keys configured: open
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "computed_at"}
    kpis = {k["name"]: k for k in body["data"]}
    assert list(kpis) == NAMES
    for kpi in body["data"]:
        assert set(kpi) >= {"name", "value", "target", "window", "status", "comparison", "unit", "definition"}
    assert kpis["success_rate"] | {"definition": ""} == {
        "name": "success_rate",
        "value": pytest.approx(0.95),
        "target": 0.9,
        "comparison": ">",
        "unit": "ratio",
        "window": "24h",
        "status": "ok",
        "definition": "",
        "samples": 20,
    }
    assert (kpis["response_time"]["value"], kpis["response_time"]["status"]) == (1.5, "ok")
    assert (kpis["user_satisfaction"]["value"], kpis["user_satisfaction"]["status"]) == (0.95, "ok")
    assert kpis["learning_rate"]["status"] == "no_data"  # nothing the week before
    assert kpis["technical_precision"]["status"] == "no_data"  # no code or debug answers

    # The last computation is exported to Prometheus; a KPI without data has no value sample.
    scraped = httpx.get(f"{live_server.base_url}/metrics", timeout=30).text
    assert 'genesys_kpi_value{kpi="success_rate"} 0.95' in scraped
    assert 'genesys_kpi_status{kpi="success_rate",status="ok"} 1.0' in scraped
    assert 'genesys_kpi_status{kpi="learning_rate",status="no_data"} 1.0' in scraped
    assert 'genesys_kpi_value{kpi="learning_rate"}' not in scraped


@pytest.fixture()
def keyed_server(settings: Any, llama_engine: Any) -> Iterator[LiveServer]:
    settings.auth.keys = [
        ApiKey(name="dev", role="user", key=USER_KEY),
        ApiKey(name="ops", role="operator", key=OPERATOR_KEY),
    ]
    yield from start_live_server(settings, llama_engine)


def test_kpis_need_an_operator_key(keyed_server: LiveServer) -> None:
    missing = get_kpis(keyed_server)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert get_kpis(keyed_server, "wrong-key-0123456789abcdef").status_code == 401
    assert get_kpis(keyed_server, USER_KEY).status_code == 403
    response = get_kpis(keyed_server, OPERATOR_KEY)
    assert response.status_code == 200
    assert [k["status"] for k in response.json()["data"]] == ["no_data"] * 6


def test_kpi_gauges_follow_the_last_computation() -> None:
    from genesys.runtime.metrics import Metrics

    metrics = Metrics()
    metrics.observe_kpi("response_time", 6.0, "breached")
    assert b'genesys_kpi_value{kpi="response_time"} 6.0' in metrics.render()
    metrics.observe_kpi("response_time", None, "no_data")
    rendered = metrics.render()
    assert b'genesys_kpi_value{kpi="response_time"}' not in rendered
    assert b'genesys_kpi_status{kpi="response_time",status="breached"} 0.0' in rendered
    assert b'genesys_kpi_status{kpi="response_time",status="no_data"} 1.0' in rendered
