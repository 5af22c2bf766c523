"""``run_training_cycle`` (the seed's manual_training_trigger) on a real store, SmolLM2 and llama.cpp:
analyse, curate, train, register, validate — and the reasons it stops early."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from genesys.runtime.adapter_scope import AdapterScope, questions_and_answers
from genesys.runtime.store import Feedback, Store
from genesys.runtime.vectors import VectorStore
from genesys.tools.dataset_writer import split_dir
from genesys.tools.scenario import load_scenario
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import SFT_FILE
from genesys.tools.training.runs import RunManager
from genesys.tools.training_cycle import run_training_cycle
from tests.tools.conftest import START, make_interaction

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"


@pytest.fixture()
def cycle_store(settings: Any) -> Iterator[Store]:
    store = Store(settings.database_url)
    yield store
    store.close()


@pytest.fixture()
def manager(settings: Any, cycle_store: Store) -> Iterator[RunManager]:
    manager = RunManager(settings, store=cycle_store.training_runs)
    yield manager
    manager.close()


def _corrections(store: Store, n_items: int) -> int:
    """Each prompt of the first ``n_items`` Fernwick facts, answered wrong and corrected by its user."""
    count = 0
    for item in load_scenario(SCENARIO).items[:n_items]:
        for number, prompt in enumerate(item.prompts):
            interaction = make_interaction(
                prompt,
                answer="I am not sure; try the documentation.",
                conversation_id=f"{item.id}-{number}",
                created_at=START + timedelta(seconds=count),
            )
            store.interactions.record(interaction)
            store.feedback.upsert(
                Feedback(interaction_id=interaction.id, thumbs="down", correction=item.correction)
            )
            count += 1
    return count


def test_an_empty_store_stops_the_cycle_with_a_reason(
    settings: Any, cycle_store: Store, manager: RunManager, llama_engine: Any, vectors: VectorStore
) -> None:
    store = cycle_store
    result = run_training_cycle(settings, store, manager, llama_engine, vectors=vectors)
    assert result.outcome == "no_data"
    assert result.reason == "no interactions yet: nothing to learn from"
    assert store.training_runs.recent() == [] and store.adapters.versions() == []


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_cycle_curates_trains_registers_and_validates(
    settings: Any, cycle_store: Store, manager: RunManager, llama_engine: Any, vectors: VectorStore
) -> None:
    store = cycle_store
    settings.quality_gates.humaneval_problems = settings.quality_gates.humaneval_problems[:1]
    fed = _corrections(store, 6)
    steps: list[str] = []
    result = run_training_cycle(
        settings,
        store,
        manager,
        llama_engine,
        vectors=vectors,
        config=TrainingConfig.from_settings(settings, max_steps=6),
        progress=lambda step, details: steps.append(step),
    )

    assert result.outcome in ("validated", "rejected"), result.reason
    assert result.curated and result.dataset_version is not None
    # The Curator added its rewrites to the training split: more rows than corrections went there.
    counts = store.datasets.get(result.dataset_version).counts
    assert counts["splits"]["train"]["sft"] > counts["splits"]["train"]["interactions"]
    assert fed == counts["stages"]["selected"]
    # The run trained under the served system prompt, and the version is registered with both forms.
    run = store.training_runs.get(result.run_id or "")
    assert run.state == "succeeded" and run.spec["system_prompt"].startswith("You are Genesys")
    version = store.adapters.get(result.candidate or "")
    assert (
        Path(version.path, "adapter.gguf").is_file() and Path(version.path, "adapter_config.json").is_file()
    )
    # Its scope: the training split's questions, with the calibrated threshold and why.
    scope = AdapterScope.read(Path(version.path))
    questions, _ = questions_and_answers(
        split_dir(settings.data_dir, "train", result.dataset_version) / SFT_FILE
    )
    assert scope is not None and set(scope.questions) == set(questions) and scope.reasons
    assert "scoped" in steps
    # The Validator decided, with a stored report, and the state follows the decision.
    assert version.state == result.outcome
    report = json.loads(Path(version.path, "validation.json").read_text())
    assert report["passed"] is (result.outcome == "validated")
    assert {g["name"] for g in report["gates"]} >= {"primary_improvement", "validation_score"}
    assert result.baseline == "base" and result.validation is not None
    assert steps[:2] == ["curating", "dataset"] and "training" in steps and steps[-1] == result.outcome
    # Nothing serves the candidate: production is untouched.
    assert store.adapters.production() is None

    # Run again with nothing new: the same dataset version is reused, not curated again.
    again = run_training_cycle(
        settings,
        store,
        manager,
        llama_engine,
        vectors=vectors,
        config=TrainingConfig.from_settings(settings, max_steps=2),
        humaneval=False,
    )
    assert again.dataset_version == result.dataset_version and not again.curated
