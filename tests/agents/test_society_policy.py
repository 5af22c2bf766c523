"""The society in policy mode on a real store, MiniLM and Chroma: each conditional edge, and why a cycle
stops where it stops. A tool is replaced only where a real one takes minutes (a training run, a
validation); the Analyst, the Curator, the registry and the rollout service are real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autogen_agentchat.messages import MessageFactory, StructuredMessage

from genesys.agents.cycles import CycleRunner
from genesys.agents.reports import (
    REPORT_MESSAGE_TYPES,
    AnalystReport,
    DatasetReport,
    DeployReport,
    TrainingReport,
    ValidationSummary,
)
from genesys.agents.roles import CycleContext, Toolbox
from genesys.agents.society import build_society
from genesys.runtime.adapter_scope import AdapterScope
from genesys.runtime.settings import DeployConfig
from genesys.runtime.store import Store
from genesys.runtime.vectors import VectorStore
from tests.agents.conftest import FakeTrainer, FakeValidation, fernwick_corrections, record_interaction


def reports(store: Store, cycle_id: str) -> list[tuple[str, str]]:
    """(source, type) of the cycle's chat messages, in order."""
    return [(m.source, m.type) for m in store.cycles.messages(cycle_id) if m.kind == "chat"]


def tools_called(store: Store, cycle_id: str) -> list[tuple[str, str]]:
    return [
        (m.source, m.payload["content"][0]["name"])
        for m in store.cycles.messages(cycle_id)
        if m.type == "ToolCallRequestEvent"
    ]


def test_an_empty_store_stops_at_the_analyst_with_its_reason(settings: Any, store: Store) -> None:
    cycle = CycleRunner(settings, store).run_cycle(trigger="test", requested_by="pytest", reason="empty")

    assert (cycle.state, cycle.outcome) == ("stopped", "no_data")
    assert cycle.outcome_reason == "no interactions yet: nothing to learn from"
    assert cycle.step == "analyst" and not cycle.active and cycle.ended_at is not None
    assert store.cycles.active() is None  # the slot is free again
    assert reports(store, cycle.id) == [
        ("operator", "TextMessage"),
        ("analyst", "StructuredMessage[AnalystReport]"),
    ]
    assert tools_called(store, cycle.id) == [
        ("analyst", "analyze_interactions"),
        ("analyst", "interaction_overview"),
        ("analyst", "decide_training"),
    ]
    last = store.cycles.messages(cycle.id)[-1]
    assert last.payload["content"]["train"] is False and last.payload["source"] == "analyst"
    assert [m.seq for m in store.cycles.messages(cycle.id)] == list(
        range(len(store.cycles.messages(cycle.id)))
    )


def test_too_little_data_stops_with_the_counts(settings: Any, store: Store, vectors: VectorStore) -> None:
    fernwick_corrections(store, 1)  # three corrections; four usable examples are needed
    for n in range(3):
        record_interaction(store, f"What is {n} + {n}?", answer=f"It is {2 * n}.")
    cycle = CycleRunner(settings, store, vectors=vectors).run_cycle(
        trigger="test", requested_by="pytest", reason="few"
    )

    assert (cycle.state, cycle.outcome) == ("stopped", "no_data")
    assert cycle.outcome_reason is not None
    assert cycle.outcome_reason.startswith(
        "too little usable data: 3 usable examples (3 corrected, 0 premium)"
    )
    assert cycle.outcome_reason.endswith("at least 4 are needed")
    report = store.cycles.messages(cycle.id)[-1].payload["content"]
    assert report["interactions"] == 6 and report["corrections"] == 3 and report["analysed"] == 6
    assert store.datasets.latest() is None  # the Curator never ran


def test_a_failed_training_run_stops_the_cycle_after_the_trainer(
    settings: Any, store: Store, vectors: VectorStore
) -> None:
    fernwick_corrections(store, 4)
    trainer = FakeTrainer("failed")
    runner = CycleRunner(settings, store, vectors=vectors, toolbox=Toolbox(train_dataset=trainer))
    cycle = runner.run_cycle(trigger="test", requested_by="pytest", reason="train")

    assert (cycle.state, cycle.outcome) == ("stopped", "training_failed")
    assert cycle.outcome_reason is not None and "the loss became NaN at step 3" in cycle.outcome_reason
    assert [source for source, _ in reports(store, cycle.id)] == ["operator", "analyst", "curator", "trainer"]
    dataset = store.datasets.latest()
    assert dataset is not None and trainer.calls == [dataset.version]  # the Curator's real version
    assert cycle.results["dataset_version"] == dataset.version and cycle.results["run_id"].startswith(
        "run-fake"
    )
    assert store.adapters.versions() == []  # nothing registered from a failed run
    curator = MessageFactory()
    for kind in REPORT_MESSAGE_TYPES:
        curator.register(kind)
    # Stored messages load back exactly as autogen messages.
    loaded = [curator.create(m.payload) for m in store.cycles.messages(cycle.id) if m.kind == "chat"]
    assert isinstance(loaded[1], StructuredMessage) and isinstance(loaded[1].content, AnalystReport)
    assert loaded[1].content.train and loaded[1].content.corrections == 12
    assert isinstance(loaded[2].content, DatasetReport) and loaded[2].content.usable  # type: ignore[attr-defined]
    assert isinstance(loaded[3].content, TrainingReport) and not loaded[3].content.succeeded  # type: ignore[attr-defined]


def test_a_rejected_candidate_stops_the_cycle_with_the_validators_reasons(
    settings: Any, store: Store, vectors: VectorStore
) -> None:
    fernwick_corrections(store, 4)
    validation = FakeValidation(passed=False)
    toolbox = Toolbox(train_dataset=FakeTrainer("succeeded"), validate=validation)
    cycle = CycleRunner(settings, store, vectors=vectors, toolbox=toolbox, engine=object()).run_cycle(  # type: ignore[arg-type]
        trigger="test", requested_by="pytest", reason="reject"
    )

    assert (cycle.state, cycle.outcome) == ("stopped", "rejected")
    assert cycle.outcome_reason is not None
    assert "humaneval_guard: HumanEval pass rate dropped 1.00" in cycle.outcome_reason
    assert [source for source, _ in reports(store, cycle.id)][-2:] == ["trainer", "validator"]
    candidate = cycle.results["candidate"]
    assert validation.calls == [candidate]
    # The real registry recorded the verdict; nothing reached users.
    adapter = store.adapters.get(candidate)
    assert adapter.state == "rejected" and adapter.metrics["validation"]["passed"] is False
    assert store.rollouts.latest() is None
    summary = store.cycles.messages(cycle.id)[-1].payload["content"]
    assert [g["name"] for g in summary["gates"] if not g["passed"]] == [
        "primary_improvement",
        "humaneval_guard",
    ]


@pytest.mark.parametrize(
    ("approval", "outcome", "state"),
    [("auto", "deployed", "running"), ("operator", "awaiting_approval", "awaiting_approval")],
)
def test_a_validated_candidate_is_rolled_out_by_the_deploy_agent(
    settings: Any, store: Store, vectors: VectorStore, approval: str, outcome: str, state: str
) -> None:
    settings.deploy = DeployConfig(approval=approval)  # type: ignore[arg-type]
    fernwick_corrections(store, 4)
    applied: list[bool] = []
    toolbox = Toolbox(train_dataset=FakeTrainer("succeeded"), validate=FakeValidation(passed=True))
    runner = CycleRunner(
        settings,
        store,
        vectors=vectors,
        toolbox=toolbox,
        engine=object(),
        on_rollout=lambda: applied.append(True),  # type: ignore[arg-type]
    )
    cycle = runner.run_cycle(trigger="test", requested_by="pytest", reason="deploy")

    assert (cycle.state, cycle.outcome) == ("completed", outcome)
    assert [source for source, _ in reports(store, cycle.id)] == [
        "operator",
        "analyst",
        "curator",
        "trainer",
        "validator",
        "deploy",
    ]
    rollout = store.rollouts.latest()
    assert rollout is not None and rollout.state == state and rollout.id == cycle.results["rollout_id"]
    assert rollout.created_by == f"deploy agent (cycle {cycle.id})"
    expected_adapter_state = "canary" if approval == "auto" else "validated"
    candidate = store.adapters.get(cycle.results["candidate"])
    assert candidate.state == expected_adapter_state
    # The Trainer gave the candidate its scope: the questions of the dataset's training split.
    scope = AdapterScope.read(Path(candidate.path))
    assert scope is not None and any("fernwick" in question for question in scope.questions)
    assert applied == [True]  # the server was told to apply the rollout at once
    deploy = store.cycles.messages(cycle.id)[-1].payload["content"]
    assert deploy["started"] is True and deploy["rollout_state"] == state


def test_the_graph_edges_are_conditional_on_each_report(settings: Any, store: Store) -> None:
    society = build_society(CycleContext(settings=settings, store=store))
    graph = society.team._graph  # the DiGraph the team follows
    assert list(graph.nodes) == ["analyst", "curator", "trainer", "validator", "deploy"]
    assert graph.get_start_nodes() == {"analyst"} and graph.get_leaf_nodes() == {"deploy"}
    edges = {
        name: [(e.target, e.condition_function) for e in node.edges] for name, node in graph.nodes.items()
    }
    assert all(len(out) == 1 and out[0][1] is not None for name, out in edges.items() if name != "deploy")

    def message(report: Any) -> StructuredMessage[Any]:
        return StructuredMessage[type(report)](content=report, source="x")  # type: ignore[misc]

    stop_and_go = [
        ("analyst", AnalystReport(train=False, reason="r"), AnalystReport(train=True, reason="r")),
        ("curator", DatasetReport(usable=False, reason="r"), DatasetReport(usable=True, reason="r")),
        (
            "trainer",
            TrainingReport(succeeded=False, reason="r"),
            TrainingReport(succeeded=True, candidate="v1", reason="r"),
        ),
        (
            "validator",
            ValidationSummary(passed=False, reason="r"),
            ValidationSummary(passed=True, reason="r"),
        ),
    ]
    for source, stop, go in stop_and_go:
        condition = edges[source][0][1]
        assert condition is not None
        assert not condition(message(stop)) and condition(message(go))
    assert DeployReport(started=True, reason="r").proceed


def test_a_failing_tool_stops_the_cycle_with_its_error(settings: Any, store: Store) -> None:
    record_interaction(store, "How do I open a file?")

    def chroma_down(*args: Any) -> int:
        raise ConnectionError("the Chroma server at http://chroma does not answer")

    runner = CycleRunner(settings, store, toolbox=Toolbox(analyze_all=chroma_down))
    cycle = runner.run_cycle(trigger="test", requested_by="pytest", reason="broken tool")

    assert (cycle.state, cycle.outcome) == ("stopped", "no_data")
    assert cycle.outcome_reason == (
        "analyze_interactions failed (ConnectionError): the Chroma server at http://chroma does not answer"
    )
    assert tools_called(store, cycle.id) == [("analyst", "analyze_interactions")]  # no decision on stale data
    execution = next(m for m in store.cycles.messages(cycle.id) if m.type == "ToolCallExecutionEvent")
    assert execution.payload["content"][0]["is_error"] is True
