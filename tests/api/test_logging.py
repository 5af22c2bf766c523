"""The server's output is structlog JSON, one object a line, with the request id on request lines."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.server import started_server


def test_json_logs_with_request_ids(tmp_path: Path) -> None:
    with started_server(tmp_path / "data") as server:
        response = httpx.post(
            f"{server.api_base}/chat/completions",
            json={"model": "genesys-local", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
            headers={"X-Request-Id": "trace-abc-123"},
            timeout=60,
        )
        assert response.headers["x-request-id"] == "trace-abc-123"
        fresh = httpx.get(f"{server.base_url}/v1/models", timeout=10)
        generated = fresh.headers["x-request-id"]
        server.stop()
        lines = [line for line in server.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"event", "level", "timestamp"} <= set(r) for r in records)
    by_request = [r for r in records if r.get("event") == "http.request"]
    assert any(r["request_id"] == "trace-abc-123" and r["path"] == "/v1/chat/completions" for r in by_request)
    assert any(r["request_id"] == generated and r["path"] == "/v1/models" for r in by_request)
    assert all(r.get("request_id") for r in by_request)
    warning = next(r for r in records if r["event"] == "auth.disabled")
    assert warning["level"] == "warning" and "loopback" in warning["message"]
