"""The SDK against the real server on loopback (the embedded model, SQLite, the society): chat and
streaming, feedback and corrections, analysis, KPIs, alerts, a learning cycle followed to its end,
rollout actions, API keys and roles, and ``setup_training_system``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from genesys.client import (
    AuthenticationError,
    BadRequestError,
    GenesysClient,
    NotFoundError,
    PermissionDeniedError,
    setup_training_system,
)
from genesys.runtime.settings import ApiKey
from tests.conftest import LiveServer, start_live_server

USER_KEY = "sdk-user-key-0123456789abcdef"
OPERATOR_KEY = "sdk-operator-key-0123456789abcdef"
QUESTION = "In one sentence: what does Python's len() return?"


@pytest.fixture()
def client(live_server: LiveServer) -> Iterator[GenesysClient]:
    with GenesysClient(live_server.base_url) as client:
        yield client


def test_chat_stream_correct_and_read_back(client: GenesysClient, live_server: LiveServer) -> None:
    answer = client.chat(QUESTION, max_tokens=16, temperature=0)
    assert answer.content.strip() and answer.model_version == "base" and answer.conversation_id
    assert (
        answer.interaction_id.startswith("chatcmpl-") and answer.usage and answer.usage.completion_tokens > 0
    )

    with client.chat_stream(
        [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": answer.content},
            {"role": "user", "content": "And for a dict?"},
        ],
        max_tokens=16,
        conversation_id=answer.conversation_id,
    ) as stream:
        pieces = list(stream)
    streamed = stream.result
    assert len(pieces) > 1 and "".join(pieces) == streamed.content
    assert streamed.interaction_id != answer.interaction_id
    assert streamed.conversation_id == answer.conversation_id
    assert streamed.usage is not None and streamed.usage.completion_tokens >= len(pieces)

    stored = client.interaction(stream)  # a ChatStream names its interaction too
    assert stored.interaction.answer == streamed.content and stored.interaction.status == "completed"

    feedback = client.correct(answer, "len() returns the number of items in a container.")
    assert (feedback.thumbs, feedback.source) == ("down", "explicit")
    assert feedback.correction == "len() returns the number of items in a container."
    detail = client.interaction(answer.interaction_id)
    assert [(f.source, f.thumbs, f.correction) for f in detail.feedback] == [
        ("explicit", "down", "len() returns the number of items in a container.")
    ]

    with pytest.raises(BadRequestError) as bad:
        client.feedback(answer, rating=9)
    assert bad.value.param == "rating" and bad.value.status == 400
    with pytest.raises(NotFoundError) as unknown:
        client.feedback("chatcmpl-does-not-exist", thumbs="up")
    assert unknown.value.code == "interaction_not_found" and "ChatResult.interaction_id" in str(unknown.value)
    with pytest.raises(NotFoundError) as no_model:
        client.chat("hi", model="gpt-9", max_tokens=4)
    assert no_model.value.code == "model_not_found" and "client.models()" in (no_model.value.hint or "")

    analysis = client.analyze()
    assert (analysis.interactions, analysis.empty) == (2, False)
    assert analysis.corrections.interactions == 1 and analysis.corrections.by_source == {"explicit": 1}
    assert analysis.satisfaction.judged == 1 and analysis.satisfaction.positive == 0
    assert analysis.pending_analysis == 2 and analysis.analyzed == 0  # a cycle's Analyst annotates them
    assert analysis.by_status == {"completed": 2}

    kpis = client.kpis()
    assert {k.name for k in kpis.data} >= {"success_rate", "user_satisfaction", "response_time"}
    assert kpis.get("success_rate").samples == 2 and kpis.get("success_rate").status == "no_data"
    with pytest.raises(KeyError, match="there are: "):
        kpis.get("happiness")
    assert client.alerts() == [] and client.alerts(state="firing") == []
    assert "genesys_" in client.metrics()


def test_a_cycle_is_started_and_followed_to_its_end(client: GenesysClient) -> None:
    client.chat(QUESTION, max_tokens=8)
    cycle = client.start_cycle("the SDK test asks for one")
    assert (cycle.state, cycle.trigger, cycle.reason) == ("running", "operator", "the SDK test asks for one")

    messages = list(client.follow_cycle(cycle, timeout=120, poll_seconds=0.2))
    assert [m.seq for m in messages] == list(range(len(messages)))  # each once, in order
    assert messages[0].source == "operator" and messages[-1].source == "analyst"

    ended = client.wait_for_cycle(cycle.id, timeout=10)
    assert ended.finished and (ended.state, ended.outcome) == ("stopped", "no_data")
    assert ended.outcome_reason and [m.seq for m in ended.messages] == [m.seq for m in messages]
    listed = client.cycles(limit=5)
    assert listed.count == 1 and listed.data[0].id == cycle.id
    assert client.analyze().analyzed == 1  # the Analyst annotated the interaction

    with pytest.raises(NotFoundError):
        client.cycle("cy-nope")


def test_rollout_status_and_a_step_that_does_not_fit(client: GenesysClient) -> None:
    status = client.rollout()
    assert status.production == "base" and status.rollout is None and status.summary
    with pytest.raises(BadRequestError) as caught:
        client.approve_rollout(reason="nothing is waiting")
    assert caught.value.code == "nothing_waiting" and "client.rollout()" in (caught.value.hint or "")
    with pytest.raises(NotFoundError) as unknown:
        client.start_rollout("v404")
    assert unknown.value.message == "no adapter version 'v404'" and "nothing by it" in str(unknown.value)


def test_setup_training_system_says_learning_is_off(live_server: LiveServer) -> None:
    """The test server runs without automatic cycles (autogen_agents.schedule false)."""
    status = setup_training_system(live_server.base_url)
    assert [c.name for c in status.checks] == ["server", "agents", "data_pipeline", "monitoring", "learning"]
    assert [c.name for c in status.missing] == ["learning"], status.summary()
    learning = status.check("learning")
    assert "only on request" in learning.detail and learning.fix and "autogen_agents.schedule" in learning.fix
    assert "analyst, curator, trainer, validator, deploy" in status.check("agents").detail
    assert "0 interactions stored" in status.check("data_pipeline").detail
    assert "0 alerts firing" in status.check("monitoring").detail
    assert status.learning is not None and status.learning.society.running
    assert "❌ | learning" in status._repr_markdown_()


@pytest.fixture()
def keyed_server(settings: Any, llama_engine: Any) -> Iterator[LiveServer]:
    """Keys for a user and an operator, and automatic cycles on (at 100 interactions: none start here)."""
    settings.auth.keys = [
        ApiKey(name="ana", role="user", key=USER_KEY),  # type: ignore[arg-type]
        ApiKey(name="olga", role="operator", key=OPERATOR_KEY),  # type: ignore[arg-type]
    ]
    settings.autogen_agents.schedule = True
    yield from start_live_server(settings, llama_engine)


def test_keys_and_roles(keyed_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENESYS_API_KEY", raising=False)
    with GenesysClient(keyed_server.base_url) as anonymous, pytest.raises(AuthenticationError) as caught:
        anonymous.chat("hi", max_tokens=4)
    assert caught.value.status == 401 and "GENESYS_API_KEY" in (caught.value.hint or "")

    with GenesysClient(keyed_server.base_url, api_key=USER_KEY) as user:
        assert user.chat("Say hi.", max_tokens=4).content is not None
        with pytest.raises(PermissionDeniedError) as denied:
            user.kpis()
        assert "'operator'" in denied.value.message
        status = user.setup_training_system()
    assert status.check("server").ok and not status.ok
    assert "needs an operator key" in status.check("agents").detail
    assert "operator" in (status.check("monitoring").fix or "")

    monkeypatch.setenv("GENESYS_API_KEY", OPERATOR_KEY)
    status = setup_training_system(keyed_server.base_url)
    assert status.ok, status.summary()
    assert "a cycle starts every 100 interactions; 1 of 100" in status.check("learning").detail
