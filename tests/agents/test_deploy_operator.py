"""The Deploy agent answering operators, on a real SQLite store: the policy's reading of messages, and llm
mode — an ``AssistantAgent`` with prompts/deploy.md driven by a scripted model client that emits the
tool calls a model would. The steps are the rollout service's either way, so the gates hold whatever
the model asks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autogen_core.models import SystemMessage

from genesys.agents.deploy_operator import DeployOperator
from genesys.agents.operator_intents import read_message
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.store import AdapterVersion, Store
from tests.agents.conftest import ScriptedClient, call

KNOWN = ("v1", "v2", "v3")


@pytest.mark.parametrize(
    ("message", "intent", "version"),
    [
        ("status", "status", None),
        ("How is the rollout going?", "status", None),
        ("what's the status of the rollout", "status", None),
        ("why did v3 fail?", "explain", "v3"),
        ("Why did v2 roll back?", "explain", "v2"),  # a question, not a rollback
        ("approve v2", "approve", "v2"),
        ("Approve V2 please", "approve", "v2"),
        ("can you approve v2?", "approve", "v2"),
        ("is v2 approved?", "status", "v2"),  # asks; does not approve
        ("go ahead", "approve", None),
        ("hold", "hold", None),
        ("pause the rollout", "hold", None),
        ("resume", "resume", None),
        ("roll back", "rollback", None),
        ("rollback v2 now", "rollback", "v2"),
        ("reject", "reject", None),
        ("roll out v1", "start", "v1"),
        ("rollout v1", "start", "v1"),
        ("help", "help", None),
    ],
)
def test_the_policy_reads_what_an_operator_asks(message: str, intent: str, version: str | None) -> None:
    read = read_message(message, KNOWN)
    assert (read.intent, read.version, read.understood) == (intent, version, True)


def test_the_policy_tells_unknown_words_and_versions_apart() -> None:
    assert read_message("make me a sandwich", KNOWN).understood is False
    unknown = read_message("why did v9 fail?", KNOWN)
    assert (unknown.intent, unknown.version, unknown.unknown_version) == ("explain", None, "v9")
    assert read_message("don't roll back", KNOWN).negated is True
    assert read_message("roll back", KNOWN).negated is False


def seed(store: Store) -> None:
    """v1 validated; v2 rejected by the Validator."""
    registry = store.adapters
    for version in ("v1", "v2"):
        registry.register(
            AdapterVersion(version=version, path=f"/nowhere/{version}", base_model="embedded"),
            actor="trainer",
            reason="trained",
        )
    registry.transition("v1", "validated", actor="validator", reason="all gates passed")
    registry.transition("v2", "rejected", actor="validator", reason="humaneval_guard: 0.50 -> 0.00")


def converse(operator: DeployOperator, message: str, conversation: str | None = None) -> Any:
    return asyncio.run(operator.converse(message, conversation))


def llm_operator(
    settings: Any, store: Store, client: ScriptedClient, prompts: PromptLibrary
) -> DeployOperator:
    settings.autogen_agents.mode = "llm"
    applied: list[str] = []
    operator = DeployOperator(
        store,
        settings,
        operator="ana",
        on_change=lambda: applied.append("apply"),
        model_client=client,
        prompts=prompts,
    )
    operator.applied = applied  # type: ignore[attr-defined]
    return operator


def test_a_model_that_approves_a_rejected_version_gets_the_refusal(
    settings: Any, store: Store, prompts: PromptLibrary
) -> None:
    seed(store)
    client = ScriptedClient(
        [
            call("approve_rollout", candidate="v2", reason="looks fine to me"),
            "Approved v2, it is rolling out.",
        ]
    )
    operator = llm_operator(settings, store, client, prompts)
    answer = converse(operator, "approve v2")

    assert answer.action is not None and answer.action.done is False
    assert "adapter v2 is rejected, not validated" in answer.action.detail
    # The model's words stay, but the reply says what really happened.
    assert answer.reply.startswith("Approved v2, it is rolling out.")
    assert "[approve: refused: adapter v2 is rejected, not validated" in answer.reply
    assert store.rollouts.latest() is None and store.adapters.get("v2").state == "rejected"
    assert operator.applied == []  # type: ignore[attr-defined]
    # The model saw the refusal as its tool's error result, with the Deploy agent's prompt and tools.
    second_call = client.seen[1]
    assert any("adapter v2 is rejected" in str(getattr(m, "content", "")) for m in second_call)
    system = client.seen[0][0]
    assert isinstance(system, SystemMessage) and system.content == prompts.get("deploy").text
    assert "When an operator talks to you" in system.content
    assert client.tools_offered[0] == [
        "rollout_status",
        "explain_version",
        "start_rollout",
        "approve_rollout",
        "reject_rollout",
        "hold_rollout",
        "resume_rollout",
        "rollback_rollout",
    ]


def test_a_model_steers_a_rollout_in_the_operators_name_and_remembers_the_conversation(
    settings: Any, store: Store, prompts: PromptLibrary
) -> None:
    seed(store)
    settings.deploy.approval = "operator"
    client = ScriptedClient(
        [
            call("rollout_status"),
            call("start_rollout", candidate="v1", reason="the operator asked"),
            call("approve_rollout", candidate="v1", reason="the operator approved"),
            "v1 now serves 20% of users.",
            call("explain_version", version="v2"),
            "v2 was rejected by the Validator: it forgot how to code.",
        ]
    )
    operator = llm_operator(settings, store, client, prompts)
    first = converse(operator, "roll out v1 and approve it")

    assert first.action is not None and (first.action.name, first.action.done) == ("approve", True)
    assert first.rollout.rollout is not None and first.rollout.rollout.state == "running"
    assert first.reply.splitlines()[0] == "v1 now serves 20% of users."
    assert "[start: done:" in first.reply and "[approve: done:" in first.reply
    events = store.rollouts.events(first.rollout.rollout.id)
    assert [(e.action, e.actor) for e in events] == [("start", "ana"), ("approve", "ana")]
    assert events[1].reason == "the operator approved"
    assert operator.applied == ["apply", "apply"]  # type: ignore[attr-defined]

    second = converse(operator, "why did v2 fail?", first.conversation_id)
    assert second.action is None
    assert second.reply == "v2 was rejected by the Validator: it forgot how to code."
    # The model read the conversation so far, and the story came from the store.
    last_call = client.seen[-1]
    texts = [str(getattr(m, "content", "")) for m in last_call]
    assert any("roll out v1 and approve it" in t for t in texts)
    assert any("humaneval_guard: 0.50 -> 0.00" in t for t in texts)
    stored = store.operator_chats.messages(first.conversation_id)
    assert [(m.role, m.author) for m in stored] == [("operator", "ana"), ("deploy", "deploy agent")] * 2
    assert stored[1].action is not None and stored[1].action["name"] == "approve"
    assert store.operator_chats.get(first.conversation_id).mode == "llm"


def test_llm_mode_without_a_usable_model_says_so_and_takes_no_step(settings: Any, store: Store) -> None:
    seed(store)
    settings.autogen_agents.mode = "llm"

    def broken() -> Any:
        from genesys.errors import ConfigError

        raise ConfigError("model qwen needs autogen_agents.llm")

    answer = converse(DeployOperator(store, settings, operator="ana", model_client=broken), "approve v1")
    assert answer.action is None and store.rollouts.latest() is None
    assert answer.reply.startswith(
        "My model is not available (model qwen needs autogen_agents.llm); nothing was done."
    )
    assert [m.role for m in store.operator_chats.messages(answer.conversation_id)] == ["operator", "deploy"]
