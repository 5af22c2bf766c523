"""``/v1/operator/chat`` on a real keyed server (policy mode): operators steer a rollout by talking to the
Deploy agent, ask why a version failed, and the conversation is stored. Real GGUF LoRA adapters are
loaded into llama.cpp as the rollout moves, exactly as with ``/v1/rollout``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genesys.runtime.ab_router import Split
from genesys.runtime.store import AdapterVersion, Store
from genesys.tools.validation import GateResult, ValidationReport, record_validation
from tests.api.test_rollout_api import (
    OPERATOR_KEY,
    USER_KEY,
    call,
    error_of,
    rollout_server,
    tiny_adapters,  # noqa: F401 - the session fixture
)
from tests.conftest import LiveServer

HUMANEVAL_REASON = "HumanEval pass rate dropped 0.50 (from 0.50 to 0.00); at most 0.01 is allowed"


def seed_rejected(store: Store, version: str, directory: Path) -> None:
    """``version`` trained and rejected by the Validator's real recording path, with two failed gates."""
    store.adapters.register(
        AdapterVersion(version=version, path=str(directory), base_model="embedded", dataset_version="ds-1"),
        actor="trainer",
        reason="trained",
    )
    gates = [
        GateResult(
            name="primary_improvement", passed=True, value=0.6, threshold=0.05, reason="+0.60 >= 0.05"
        ),
        GateResult(name="humaneval_guard", passed=False, value=0.5, threshold=0.01, reason=HUMANEVAL_REASON),
    ]
    report = ValidationReport(
        candidate=version,
        baseline="r1",
        metrics={"candidate": {"reference_pass_rate": 0.6}, "baseline": {"reference_pass_rate": 0.0}},
        gates=gates,
        passed=False,
        summary=f"{version} rejected against r1 (humaneval_guard: {HUMANEVAL_REASON}).",
    )
    record_validation(store.adapters, version, report)


@pytest.fixture()
def server(
    settings: Any,
    llama_engine: Any,
    tiny_adapters: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> Iterator[LiveServer]:
    """r1 in production, r2 validated, r3 a candidate, r4 rejected by the Validator; approval operator."""
    store = Store(settings.database_url)
    seed_rejected(store, "r4", tmp_path / "r4")
    store.close()
    yield from rollout_server(settings, llama_engine, tiny_adapters, approval="operator")


def say(server: LiveServer, message: str, conversation: str | None = None, key: str = OPERATOR_KEY) -> Any:
    body: dict[str, Any] = {"message": message}
    if conversation is not None:
        body["conversation_id"] = conversation
    response = call(server, "POST", "/v1/operator/chat", key=key, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_operator_steers_a_rollout_by_talking_to_the_deploy_agent(server: LiveServer) -> None:
    services = server.services
    status = say(server, "status")
    conversation = status["conversation_id"]
    assert status["action"] is None and status["rollout"]["production"] == "r1"
    assert "no rollout yet; r1 serves everyone" in status["reply"].lower()
    assert "Validated and not rolled out: r2." in status["reply"]

    # The society's Deploy agent queued r2 (approval: operator); the operator approves it in words.
    assert call(server, "POST", "/v1/rollout/start", json={"candidate": "r2"}).status_code == 200
    waiting = say(server, "what's the status?", conversation)
    assert "waits for an operator's approval" in waiting["reply"] and waiting["action"] is None
    approved = say(server, "approve r2", conversation)
    assert approved["action"]["name"] == "approve" and approved["action"]["done"] is True
    assert approved["reply"].startswith("Done, approved:")
    assert (approved["rollout"]["rollout"]["state"], approved["rollout"]["rollout"]["traffic"]) == (
        "running",
        0.2,
    )
    assert services.router.split == Split("r1", "r2", 0.2)  # the server applied it at once
    assert "r2" in services.host.engine.info().adapters

    held = say(server, "hold", conversation)
    assert (held["action"]["done"], held["rollout"]["rollout"]["state"]) == (True, "held")
    again = say(server, "hold", conversation)  # a step that does not fit: refused with the service's reason
    assert again["action"]["done"] is False
    assert "'hold' needs it running" in again["action"]["detail"] and again["reply"].startswith(
        "I did not hold"
    )
    resumed = say(server, "resume", conversation)
    assert resumed["rollout"]["rollout"]["state"] == "running"
    rolled = say(server, "roll back, users complain about odd answers", conversation)
    assert rolled["action"] == {
        "name": "rollback",
        "version": "r2",
        "done": True,
        "detail": rolled["rollout"]["summary"],
        "rollout_id": rolled["rollout"]["rollout"]["id"],
        "rollout_state": "rolled_back",
    }
    assert services.router.split == Split("r1")

    # Every step is audited with the operator's key name and words.
    events = call(server, "GET", "/v1/rollout").json()["events"]
    assert [(e["action"], e["actor"]) for e in events] == [
        ("start", "ops"),
        ("approve", "ops"),
        ("hold", "ops"),
        ("resume", "ops"),
        ("rollback", "ops"),
    ]
    assert events[-1]["reason"] == "operator chat: roll back, users complain about odd answers"

    stored = call(server, "GET", f"/v1/operator/chat/{conversation}").json()
    assert stored["started_by"] == "ops" and stored["mode"] == "policy"
    messages = stored["messages"]
    assert [m["role"] for m in messages] == ["operator", "deploy"] * 7
    assert [m["text"] for m in messages if m["role"] == "operator"] == [
        "status",
        "what's the status?",
        "approve r2",
        "hold",
        "hold",
        "resume",
        "roll back, users complain about odd answers",
    ]
    assert messages[5]["action"]["name"] == "approve" and messages[5]["text"] == approved["reply"]
    assert messages[1]["action"] is None


def test_the_deploy_agent_says_why_a_version_failed_and_keeps_the_gates(server: LiveServer) -> None:
    why = say(server, "why did r4 fail?")
    assert why["action"] is None
    assert "r4 was rejected by the Validator" in why["reply"]
    assert f"humaneval_guard: {HUMANEVAL_REASON}" in why["reply"]
    assert "primary_improvement" not in why["reply"]  # only the failed gates are reasons
    assert "dataset ds-1" in why["reply"]
    # "why did it fail?" with no version: the one that failed last.
    assert "r4 was rejected by the Validator" in say(server, "why did it fail?")["reply"]

    unknown = say(server, "why did v9 fail?")
    assert unknown["action"] is None
    assert unknown["reply"].startswith("I know no adapter version 'v9': the versions are r4 (rejected), ")

    # Approving what the Validator did not pass fails with the rollout service's reason.
    refused = say(server, "approve r4")
    assert refused["action"]["done"] is False
    assert "adapter r4 is rejected, not validated" in refused["action"]["detail"]
    assert refused["rollout"]["rollout"] is None and server.services.router.split == Split("r1")
    not_validated = say(server, "roll out r3")
    assert "r3 is candidate, not validated: run the Validator on it first" in not_validated["reply"]
    store = server.services.store
    assert store.rollouts.latest() is None and store.adapters.get("r4").state == "rejected"


def test_help_for_what_it_does_not_understand_and_errors_for_bad_requests(server: LiveServer) -> None:
    puzzled = say(server, "make me a sandwich")
    assert puzzled["action"] is None
    assert puzzled["reply"].startswith("I did not understand that. I am the Deploy agent. I understand:")
    assert "'roll back'" in puzzled["reply"] and "'approve'" in puzzled["reply"]
    assert say(server, "help")["reply"].startswith("I am the Deploy agent.")
    negated = say(server, "don't roll back")
    assert negated["action"] is None and negated["reply"].startswith("I did nothing")

    forbidden = error_of(
        call(server, "POST", "/v1/operator/chat", key=USER_KEY, json={"message": "status"}), 403
    )
    assert forbidden["message"] == "this needs the 'operator' role; your key has 'user'"
    assert error_of(call(server, "GET", f"/v1/operator/chat/{puzzled['conversation_id']}", key=USER_KEY), 403)
    empty = error_of(call(server, "POST", "/v1/operator/chat", json={"message": "   "}), 400)
    assert empty["param"] == "message" and "must not be empty" in empty["message"]
    assert error_of(call(server, "POST", "/v1/operator/chat", json={}), 400)["message"] == (
        "you must provide 'message'"
    )
    lost = error_of(
        call(server, "POST", "/v1/operator/chat", json={"message": "status", "conversation_id": "op-nope"}),
        404,
    )
    assert lost["message"] == "no operator conversation 'op-nope'"
    assert error_of(call(server, "GET", "/v1/operator/chat/op-nope"), 404)["param"] == "conversation_id"
