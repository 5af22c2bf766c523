"""GET /metrics: Prometheus text that the Prometheus parser reads, with what the server did."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer


def scrape(server: LiveServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items()))


def labels_of_arm() -> dict[str, str]:
    return {"model_version": "base", "arm": "production"}


def test_metrics_follow_requests_feedback_and_the_store(live_server: LiveServer) -> None:
    before = scrape(live_server)
    assert value(before, "genesys_engine_ready") == 1
    assert value(before, "genesys_interactions_stored") == 0
    reply = httpx.post(
        f"{live_server.api}/chat/completions",
        json={"model": "genesys-local", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    ).json()
    httpx.post(f"{live_server.api}/chat/completions", json={"model": "nope", "messages": []}, timeout=10)
    httpx.post(
        f"{live_server.api}/feedback", json={"interaction_id": reply["id"], "thumbs": "up"}, timeout=10
    )
    httpx.get(f"{live_server.api}/no/such/route", timeout=10)

    after = scrape(live_server)
    labels = {"endpoint": "chat", "model_version": "base", "arm": "production"}
    assert value(after, "genesys_generations_total", status="completed", **labels) == 1
    assert value(after, "genesys_generation_duration_seconds_count", **labels) == 1
    assert value(after, "genesys_time_to_first_token_seconds_count", **labels) == 1
    completion = value(after, "genesys_tokens_total", kind="completion", model_version="base")
    assert completion == reply["usage"]["completion_tokens"]
    assert value(after, "genesys_http_requests_total", path="/v1/chat/completions", code="200") == 1
    assert value(after, "genesys_http_requests_total", path="/v1/chat/completions", code="400") == 1
    assert value(after, "genesys_http_requests_total", path="other", code="404") == 1  # bounded labels
    assert value(after, "genesys_interactions_stored") == 1
    assert value(after, "genesys_feedback_total", source="explicit", verdict="up") == 1
    # Satisfaction per model version and arm, and the learning side's state (nothing yet).
    assert value(after, "genesys_feedback_verdicts_total", verdict="up", **labels_of_arm()) == 1
    assert value(after, "genesys_satisfaction_ratio", **labels_of_arm()) == 1.0
    assert value(after, "genesys_training_runs", state="running") == 0
    assert value(after, "genesys_dataset_rows", split="train") == 0
    assert value(after, "genesys_rollout_state", state="none") == 1
