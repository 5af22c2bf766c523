"""``/v1/cycles`` on the real app: cycles started in the background, listed, and read back with every
message; a second trigger while one runs is a 409; operators only; OpenAI-style errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from genesys.agents.roles import Toolbox
from genesys.runtime.settings import ApiKey
from tests.agents.conftest import FakeTrainer, fernwick_corrections
from tests.conftest import LiveServer, start_live_server

USER_KEY = "user-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"


def wait_until_ended(server: LiveServer, cycle_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.api}/cycles/{cycle_id}", timeout=10).json()
        if body["state"] not in ("running", "interrupted"):
            return dict(body)
        time.sleep(0.2)
    raise AssertionError(f"cycle {cycle_id} did not end")


def test_an_operator_starts_a_cycle_and_reads_its_messages(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.api}/cycles").json() == {"data": [], "count": 0}

    started = httpx.post(f"{live_server.api}/cycles", json={"reason": "let us see"}, timeout=10)
    assert started.status_code == 202, started.text
    cycle = started.json()
    assert (cycle["trigger"], cycle["reason"], cycle["mode"]) == ("operator", "let us see", "policy")
    assert cycle["requested_by"] == "local operator (no API keys)" and cycle["id"].startswith("cy-")

    ended = wait_until_ended(live_server, cycle["id"])
    assert (ended["state"], ended["outcome"]) == ("stopped", "no_data")
    assert ended["outcome_reason"] == "no interactions yet: nothing to learn from"
    assert set(ended["prompt_versions"]) == {
        "analyst",
        "curator",
        "trainer",
        "validator",
        "deploy",
        "genesys",
    }
    messages = ended["messages"]
    assert [m["seq"] for m in messages] == list(range(len(messages)))
    assert [(m["source"], m["kind"]) for m in messages if m["kind"] == "chat"] == [
        ("operator", "chat"),
        ("analyst", "chat"),
    ]
    report = messages[-1]
    assert report["type"] == "StructuredMessage[AnalystReport]"
    assert report["payload"]["content"]["train"] is False and report["payload"]["source"] == "analyst"

    listed = httpx.get(f"{live_server.api}/cycles", params={"limit": 5}).json()
    assert listed["count"] == 1 and [c["id"] for c in listed["data"]] == [cycle["id"]]
    assert "messages" not in listed["data"][0] and "team_state" not in listed["data"][0]


def test_a_second_trigger_while_a_cycle_runs_is_a_409(live_server: LiveServer) -> None:
    fernwick_corrections(live_server.services.store, 4)
    trainer = FakeTrainer("failed", block=True)  # a training run that takes as long as the test wants
    scheduler = live_server.services.cycles
    scheduler.runner.toolbox = Toolbox(train_dataset=trainer)
    try:
        first = httpx.post(f"{live_server.api}/cycles", json={"force_curate": True}, timeout=10).json()
        assert trainer.started.wait(120)
        second = httpx.post(f"{live_server.api}/cycles", timeout=10)
        assert second.status_code == 409
        error = second.json()["error"]
        assert error["code"] == "cycle_in_progress" and error["type"] == "invalid_request_error"
        assert error["message"].startswith(f"cycle {first['id']} is running (step: trainer")
        assert error["message"].endswith("one cycle runs at a time: wait for it to end")
        running = httpx.get(f"{live_server.api}/cycles/{first['id']}").json()
        assert running["state"] == "running" and running["step"] == "trainer"
        assert running["results"]["dataset_version"].startswith("ds-")
    finally:
        trainer.release.set()
    ended = wait_until_ended(live_server, first["id"])
    assert (ended["state"], ended["outcome"]) == ("stopped", "training_failed")
    assert [m["source"] for m in ended["messages"] if m["kind"] == "chat"] == [
        "operator",
        "analyst",
        "curator",
        "trainer",
    ]


def test_cycle_errors_are_openai_errors(live_server: LiveServer) -> None:
    missing = httpx.get(f"{live_server.api}/cycles/cy-nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "no cycle 'cy-nope'",
        "type": "invalid_request_error",
        "param": "cycle_id",
        "code": None,
    }
    wrong = httpx.post(f"{live_server.api}/cycles", json={"reasn": "typo"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "reasn"
    assert httpx.get(f"{live_server.api}/cycles", params={"limit": 0}).status_code == 400


@pytest.fixture()
def keyed_server(settings: Any, llama_engine: Any) -> Iterator[LiveServer]:
    settings.auth.keys = [
        ApiKey(name="dev", role="user", key=USER_KEY),  # type: ignore[arg-type]
        ApiKey(name="ops", role="operator", key=OPERATOR_KEY),  # type: ignore[arg-type]
    ]
    yield from start_live_server(settings, llama_engine)


def test_cycles_need_the_operator_role(keyed_server: LiveServer) -> None:
    api = keyed_server.api
    user = {"Authorization": f"Bearer {USER_KEY}"}
    operator = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    assert httpx.get(f"{api}/cycles").status_code == 401
    assert httpx.get(f"{api}/cycles", headers=user).status_code == 403
    assert httpx.post(f"{api}/cycles", headers=user).status_code == 403
    started = httpx.post(f"{api}/cycles", headers=operator, json={"reason": "ops asked"}, timeout=10)
    assert started.status_code == 202 and started.json()["requested_by"] == "ops"
    deadline = time.monotonic() + 60
    while httpx.get(f"{api}/cycles/{started.json()['id']}", headers=operator).json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
