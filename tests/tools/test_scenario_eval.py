"""A scenario's holdout phrasings asked of a model version through the engine, as the benchmarks do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genesys.tools.scenario import load_scenario
from genesys.tools.scenario_eval import holdout_of_version
from tests.tools.test_simulation import tiny_scenario


def test_the_base_model_is_asked_every_holdout_phrasing_and_knows_no_fernwick(
    llama_engine: Any, tmp_path: Path
) -> None:
    scenario = load_scenario(tiny_scenario(tmp_path, items=1))

    result = holdout_of_version(scenario, llama_engine, None, system_prompt="You help with code.")

    assert (result.model, result.split) == ("base", "holdout")
    assert [a.question for a in result.items] == scenario.items[0].holdout
    assert all(a.answer.strip() for a in result.items)
    assert (result.right, result.total, result.accuracy) == (0, 2, 0.0)
