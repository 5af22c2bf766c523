"""One whole cycle in policy mode with nothing faked: Fernwick corrections recorded as interactions with
thumbs-down and corrections, the real Analyst and Curator, a tiny real training run (SmolLM2, LoRA, a
worker process), the real Validator on llama.cpp with a one-problem HumanEval guard, and the Deploy
agent when the candidate passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genesys.agents.cycles import CycleRunner
from genesys.runtime.store import Store
from genesys.runtime.vectors import VectorStore
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.runs import RunManager
from tests.agents.conftest import fernwick_corrections


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_policy_cycle_learns_from_corrections_end_to_end(
    settings: Any, store: Store, vectors: VectorStore, llama_engine: Any
) -> None:
    settings.quality_gates.humaneval_problems = ["HumanEval/0"]
    settings.quality_gates.max_tokens = 64  # held-out answers: enough to name the API
    fed = fernwick_corrections(store, 6)
    manager = RunManager(settings, store=store.training_runs)
    runner = CycleRunner(
        settings,
        store,
        engine=llama_engine,
        vectors=vectors,
        manager=manager,
        training_config=TrainingConfig.from_settings(settings, max_steps=4),
    )
    try:
        cycle = runner.run_cycle(trigger="test", requested_by="pytest", reason="end to end")
    finally:
        manager.close()

    assert cycle.outcome in ("deployed", "rejected"), cycle.outcome_reason
    messages = store.cycles.messages(cycle.id)
    chat = [m for m in messages if m.kind == "chat"]
    expected = ["operator", "analyst", "curator", "trainer", "validator"]
    expected += ["deploy"] if cycle.outcome == "deployed" else []
    assert [m.source for m in chat] == expected
    assert [m.type for m in chat[1:]] == [
        "StructuredMessage[AnalystReport]",
        "StructuredMessage[DatasetReport]",
        "StructuredMessage[TrainingReport]",
        "StructuredMessage[ValidationSummary]",
        "StructuredMessage[DeployReport]",
    ][: len(chat) - 1]
    analyst, dataset, training, validation = (m.payload["content"] for m in chat[1:5])
    assert analyst["train"] and analyst["corrections"] == fed
    assert (
        dataset["usable"]
        and dataset["curated"]
        and dataset["train_rows"] >= 4
        and dataset["held_out_rows"] > 0
    )
    assert (
        training["succeeded"]
        and training["steps"] == 4
        and training["candidate"] == cycle.results["candidate"]
    )
    assert validation["candidate"] == training["candidate"] and validation["baseline"] == "base"
    assert {g["name"] for g in validation["gates"]} >= {
        "primary_improvement",
        "validation_score",
        "humaneval_guard",
    }
    # Every step's tool ran for real, and its result is on record beside the report.
    calls = [m.payload["content"][0]["name"] for m in messages if m.type == "ToolCallRequestEvent"]
    assert calls[:5] == [
        "analyze_interactions",
        "interaction_overview",
        "decide_training",
        "curate_dataset",
        "train_adapter",
    ]
    run = store.training_runs.get(training["run_id"])
    assert run.state == "succeeded" and run.dataset_version == dataset["version"]
    adapter = store.adapters.get(training["candidate"])
    report = json.loads(Path(adapter.path, "validation.json").read_text())
    assert report["passed"] is validation["passed"]
    if cycle.outcome == "deployed":
        assert (cycle.state, adapter.state) == ("completed", "canary")
        rollout = store.rollouts.active()
        assert rollout is not None and rollout.candidate == adapter.version and rollout.traffic == 0.2
    else:
        assert (cycle.state, adapter.state) == ("stopped", "rejected")
        assert store.rollouts.latest() is None
        failed = [g for g in validation["gates"] if not g["passed"]]
        assert failed and all(g["reason"].rstrip(".") in (cycle.outcome_reason or "") for g in failed)
    assert cycle.prompt_versions["genesys"] and cycle.turns == len(expected) - 1
