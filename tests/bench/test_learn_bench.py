"""`genesys bench learn` end to end on a tiny scenario: every step runs for real (the server answers,
users correct it through the API, the cycle curates, trains, validates), with training cut short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genesys.runtime.settings import load_settings
from genesys.runtime.store import Store
from tests.test_cli import REPO, genesys, one_line_error

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)
def test_bench_learn_runs_the_whole_loop_and_prints_its_figures(tmp_path: Path) -> None:
    scenario = tmp_path / "two_facts.jsonl"
    lines = (REPO / "tests" / "data" / "fernwick_scenario.jsonl").read_text().splitlines()[:2]
    scenario.write_text("\n".join(lines) + "\n")
    out = tmp_path / "result.json"

    args = ["bench", "learn", "--scenario", str(scenario), "--data-dir", str(tmp_path / "data")]
    args += ["--max-steps", "4", "--no-humaneval", "--json-out", str(out)]
    result = genesys(*args, timeout=1400)

    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures == json.loads(out.read_text())
    for key in ("holdout_accuracy_before", "holdout_accuracy_after", "train_seconds"):
        assert 0 <= figures[key] <= (1 if "accuracy" in key else 1400), key
    assert figures["humaneval_before"] is None and figures["humaneval_after"] is None
    # Two facts, three phrasings each: six questions asked through the API, all answered wrong by the
    # base model and corrected; the cycle curated them, trained 4 steps, and the Validator decided.
    assert figures["feed"]["asked"] == 6 and figures["feed"]["corrected"] == 6
    # Each question its own conversation, named by item and phrasing: the split (seeded by them) and
    # so the trained rows are the same every run.
    store = Store(load_settings(data_dir=tmp_path / "data").database_url)
    ids = [json.loads(line)["id"] for line in lines]
    assert sorted(i.conversation_id for i in store.interactions.list()) == sorted(
        f"bench-learn-{item}-{n}" for item in ids for n in range(3)
    )
    assert figures["holdout_accuracy_before"] == 0
    assert figures["outcome"] in ("validated", "rejected") and figures["candidate"] == "v1"
    assert figures["hyperparameters"]["total_steps"] == 4
    targets = {
        "before_under_10pct",
        "after_at_least_60pct",
        "train_under_10min",
        "humaneval_at_most_1pt_lower",
    }
    assert set(figures["targets"]) == targets
    assert "holdout accuracy before" in result.stderr  # the table


def test_bench_learn_wants_a_fresh_data_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "genesys.db").write_text("")
    scenario = str(REPO / "tests" / "data" / "fernwick_scenario.jsonl")
    args = ["bench", "learn", "--scenario", scenario, "--data-dir", str(tmp_path / "data")]
    line = one_line_error(genesys(*args))
    assert "is not empty" in line
