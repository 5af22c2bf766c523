"""``learning_setup`` (``GET /v1/learning``) on a real store and prompt directory, read by the SDK's
checks as ``setup_training_system`` reads it: what is missing is named, with what to do."""

from __future__ import annotations

from typing import Any

from genesys.agents.learning_status import learning_setup
from genesys.client import LearningSetup
from genesys.client._setup import _agents_check, _data_pipeline_check, _learning_check
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.store import Store
from tests.agents.conftest import record_interaction


def _as_client_sees_it(settings: Any, store: Store, prompts: PromptLibrary) -> LearningSetup:
    report = learning_setup(settings, store, None, prompts=prompts)
    return LearningSetup.model_validate_json(report.model_dump_json())


def test_a_missing_prompt_and_no_society_are_named(
    settings: Any, store: Store, prompts: PromptLibrary
) -> None:
    (prompts.directory / "trainer.md").unlink()
    record_interaction(store, "How do I reverse a list?")
    setup = _as_client_sees_it(settings, store, prompts)

    assert [a.name for a in setup.society.agents] == [
        "analyst",
        "curator",
        "trainer",
        "validator",
        "deploy",
        "genesys",
    ]
    trainer = next(a for a in setup.society.agents if a.name == "trainer")
    assert (trainer.prompt_version, trainer.settings_section) == ("unavailable", "trainer_agent")
    assert any("prompt trainer refused" in w for w in setup.society.warnings)
    assert not setup.society.available and not setup.society.running
    assert setup.triggers.trigger_threshold == 100 and setup.triggers.interactions_since_last_cycle == 1
    assert setup.data_pipeline.interactions == 1 and setup.data_pipeline.store == "ok"

    agents = _agents_check(setup)
    assert (
        not agents.ok
        and "does not run the society" in agents.detail
        and "genesys serve" in (agents.fix or "")
    )
    setup.society.available = setup.society.running = True
    agents = _agents_check(setup)
    assert (
        not agents.ok
        and "no usable prompt for: trainer" in agents.detail
        and "prompts/" in (agents.fix or "")
    )
    assert not _learning_check(setup).ok  # automatic triggers are off in test settings

    pipeline = _data_pipeline_check(setup)
    assert not pipeline.ok and "raw export directory" in pipeline.detail  # no server created data/raw here
    (settings.data_dir / "raw").mkdir(parents=True)
    assert _data_pipeline_check(_as_client_sees_it(settings, store, prompts)).ok
