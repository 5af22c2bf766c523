"""The SDK without a Genesys server: its models against the server's, its errors, its SSE parsing,
and a server that is not there (a real refused connection on loopback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from genesys import errors as genesys_errors
from genesys.client import (
    AuthenticationError,
    BadRequestError,
    ChatResult,
    ConflictError,
    GenesysAPIError,
    GenesysClient,
    GenesysError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    UnavailableError,
    setup_training_system,
)
from genesys.client import _models as client_models
from tests.conftest import free_port


def _server_pairs() -> list[tuple[type[BaseModel], type[BaseModel]]]:
    from genesys.agents import learning_status
    from genesys.api.schemas import ModelCard
    from genesys.runtime.store import Cycle, CycleMessage, Feedback, Interaction, Rollout, RolloutEvent
    from genesys.runtime.store.ide_events import IdeEvent
    from genesys.tools import alerts, kpis, overview
    from genesys.tools.ab_stats import AbDecision, ArmStats
    from genesys.tools.feedback import InteractionDetail
    from genesys.tools.rollout import RolloutStatus

    m = client_models
    return [
        (m.ModelInfo, ModelCard),
        (m.Feedback, Feedback),
        (m.Interaction, Interaction),
        (m.IdeEvent, IdeEvent),
        (m.InteractionDetail, InteractionDetail),
        (m.Analysis, overview.InteractionOverview),
        (m.Satisfaction, overview.Satisfaction),
        (m.Corrections, overview.Corrections),
        (m.GapSummary, overview.GapSummary),
        (m.DatasetSummary, overview.DatasetSummary),
        (m.Kpi, kpis.Kpi),
        (m.KpiReport, kpis.KpiReport),
        (m.Alert, alerts.AlertPublic),
        (m.Cycle, Cycle),
        (m.CycleMessage, CycleMessage),
        (m.Rollout, Rollout),
        (m.RolloutEvent, RolloutEvent),
        (m.ArmStats, ArmStats),
        (m.AbEvaluation, AbDecision),
        (m.RolloutStatus, RolloutStatus),
        (m.LearningSetup, learning_status.LearningSetup),
        (m.SocietySetup, learning_status.SocietySetup),
        (m.AgentSetup, learning_status.AgentSetup),
        (m.TriggerSetup, learning_status.TriggerSetup),
        (m.DataPipelineSetup, learning_status.DataPipelineSetup),
    ]


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields) | set(model.model_computed_fields)


def test_the_sdk_models_have_every_field_the_server_sends() -> None:
    missing = {
        client.__name__: sorted(_fields(server) - _fields(client))
        for client, server in _server_pairs()
        if _fields(server) - _fields(client)
    }
    assert not missing, f"server fields the SDK's models lack: {missing}"


def test_the_sdk_keeps_fields_it_does_not_know() -> None:
    kpi = client_models.Kpi.model_validate(
        {
            "name": "success_rate",
            "value": 0.9,
            "target": 0.9,
            "comparison": ">",
            "unit": "ratio",
            "window": "24h",
            "status": "ok",
            "definition": "d",
            "samples": 20,
            "added_later": [1, 2],
        }
    )
    assert kpi.model_extra == {"added_later": [1, 2]}


def _client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> GenesysClient:
    return GenesysClient("http://genesys.test", transport=httpx.MockTransport(handler), **kwargs)


def _error(status: int, message: str, code: str | None = None, param: str | None = None) -> httpx.Response:
    type_ = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return httpx.Response(status, json=body, headers={"x-request-id": "req-1"})


@pytest.mark.parametrize(
    ("status", "code", "param", "cls", "hint_has"),
    [
        (400, "invalid_value", "rating", BadRequestError, "Fix the request"),
        (401, None, None, AuthenticationError, "GENESYS_API_KEY"),
        (403, None, None, PermissionDeniedError, "role"),
        (404, "model_not_found", "model", NotFoundError, "client.models()"),
        (404, "interaction_not_found", "interaction_id", NotFoundError, "ChatResult.interaction_id"),
        (409, "cycle_in_progress", None, ConflictError, "wait_for_cycle"),
        (413, "body_too_large", None, BadRequestError, "server.max_body_bytes"),
        (500, None, None, ServerError, "log"),
        (503, None, None, UnavailableError, "wait_until_ready"),
    ],
)
def test_a_refusal_is_the_matching_error_with_the_servers_words_and_what_to_do(
    status: int, code: str | None, param: str | None, cls: type[GenesysAPIError], hint_has: str
) -> None:
    client = _client(lambda request: _error(status, "the server's own words", code, param))
    with pytest.raises(cls) as caught:
        client.chat("hi")
    error = caught.value
    assert isinstance(error, GenesysError) and isinstance(error, genesys_errors.GenesysError)
    assert (error.status, error.code, error.param) == (status, code, param)
    assert error.message == "the server's own words" and error.request_id == "req-1"
    assert error.hint is not None and hint_has in error.hint
    assert (error.method, error.url) == ("POST", "http://genesys.test/v1/chat/completions")
    assert "the server's own words" in str(error) and error.hint in str(error)
    if status == 403:
        assert isinstance(error, AuthenticationError)  # one except clause catches both


def test_a_body_that_is_not_openai_shaped_still_gives_a_readable_error() -> None:
    client = _client(lambda request: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(ServerError) as caught:
        client.kpis()
    assert caught.value.message == "<html>Bad gateway</html>" and caught.value.status == 502


def test_an_unreachable_server_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    with GenesysClient(url) as client, pytest.raises(UnavailableError) as caught:
        client.health()
    error = caught.value
    assert error.status is None and url in error.message
    assert error.hint is not None and "genesys serve" in error.hint and "GENESYS_URL" in error.hint

    status = setup_training_system(url, wait_ready=0)
    assert not status.ok
    assert [c.name for c in status.checks] == ["server", "agents", "data_pipeline", "monitoring", "learning"]
    assert [c.name for c in status.missing] == [c.name for c in status.checks]
    assert status.check("server").fix == error.hint
    assert status.check("agents").detail == "not checked: the server cannot be reached"
    assert "not ready: server, agents" in status.summary() and "genesys serve" in status.summary()


def test_the_base_url_comes_from_the_argument_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GENESYS_URL", raising=False)
    assert GenesysClient().base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("GENESYS_URL", "http://gpu-box:8001/v1/")
    client = GenesysClient()
    assert (client.base_url, client.api_base) == ("http://gpu-box:8001", "http://gpu-box:8001/v1")
    assert GenesysClient("https://genesys.example").base_url == "https://genesys.example"
    with pytest.raises(ValueError, match="http:// or https://"):
        GenesysClient("genesys.example:8000")


def test_the_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"status": "ok", "version": "0"})

    monkeypatch.setenv("GENESYS_API_KEY", "from-the-environment")
    _client(handler).health()
    _client(handler, api_key="given").health()
    monkeypatch.delenv("GENESYS_API_KEY")
    _client(handler).health()
    assert seen == ["Bearer from-the-environment", "Bearer given", None]


def _sse(*events: Any) -> bytes:
    parts = [": keep-alive comment\n\n"]
    for event in events:
        parts.append(f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n")
    return "".join(parts).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "genesys-local",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


STREAM_HEADERS = {
    "content-type": "text/event-stream",
    "x-genesys-interaction-id": "chatcmpl-1",
    "x-genesys-model-version": "v7",
    "x-genesys-conversation-id": "conv-1",
}


def test_a_stream_yields_text_and_ends_with_the_whole_result() -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"pa'},
    }
    body = _sse(
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hello"}),
        _chunk({"content": ", world"}),
        _chunk({"tool_calls": [call]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a.py"}'}}]}),
        _chunk({}, "tool_calls"),
        {
            "id": "chatcmpl-1",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        },
        "[DONE]",
    )
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=body, headers=STREAM_HEADERS)

    with _client(handler).chat_stream("hi", max_tokens=8, conversation_id="conv-1") as stream:
        assert (stream.interaction_id, stream.model_version) == ("chatcmpl-1", "v7")
        with pytest.raises(RuntimeError, match="not ended"):
            _ = stream.result
        texts = list(stream)
    assert texts == ["Hello", ", world"]
    result = stream.result
    assert isinstance(result, ChatResult)
    assert (result.content, result.finish_reason, result.conversation_id) == (
        "Hello, world",
        "tool_calls",
        "conv-1",
    )
    assert result.tool_calls == [
        {
            "type": "function",
            "id": "call_1",
            "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
        }
    ]
    assert result.usage is not None and result.usage.total_tokens == 8
    assert sent[0]["stream"] is True and sent[0]["max_tokens"] == 8
    assert sent[0]["stream_options"] == {"include_usage": True}


def test_an_error_mid_stream_raises_after_the_text_already_sent() -> None:
    error = {"error": {"message": "the engine failed", "type": "server_error", "param": None, "code": None}}
    body = _sse(_chunk({"content": "Par"}), error, "[DONE]")
    client = _client(lambda request: httpx.Response(200, content=body, headers=STREAM_HEADERS))
    stream = client.chat_stream("hi")
    assert next(stream) == "Par"
    with pytest.raises(ServerError, match="the engine failed"):
        next(stream)


def test_a_stream_cut_off_before_done_is_an_error() -> None:
    body = _sse(_chunk({"content": "Par"}))
    client = _client(lambda request: httpx.Response(200, content=body, headers=STREAM_HEADERS))
    with pytest.raises(GenesysAPIError, match="without \\[DONE\\]"):
        client.chat_stream("hi").until_done()


def test_a_server_still_loading_its_model_is_reported_with_what_to_wait_for() -> None:
    not_ready = {"status": "not_ready", "checks": {"engine": "loading", "store": "ok"}, "engine": "llamacpp"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok", "version": "0.1.0"})
        if request.url.path == "/readyz":
            return httpx.Response(503, json=not_ready)
        return _error(404, "Not Found", "not_found")

    client = _client(handler)
    readiness = client.readiness()  # a 503 with the report is an answer, not an error
    assert not readiness.ready and readiness.checks == {"engine": "loading", "store": "ok"}

    status = client.setup_training_system(wait_ready=0)
    server = status.check("server")
    assert not server.ok and "not ready (engine loading, store ok)" in server.detail
    assert server.fix and "wait_until_ready" in server.fix
    agents = status.check("agents")  # an older server without /v1/learning
    assert not agents.ok and agents.detail == "this server does not serve the learning set-up (/v1/learning)"
    assert agents.fix == "Upgrade the server to the version of this SDK."

    waited = client.setup_training_system(wait_ready=0.3).check("server")
    assert "not ready after 0.3 s (engine loading, store ok)" in waited.detail
