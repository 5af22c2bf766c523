"""`genesys eval`, `genesys train` and `genesys monitor` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from genesys.runtime.store import Store
from genesys.runtime.store.training_runs import TrainingProgress, TrainingRun
from tests.test_cli import REPO, genesys, one_line_error

SCENARIO = REPO / "tests" / "data" / "fernwick_scenario.jsonl"


def test_eval_asks_the_base_model_and_prints_accuracy_and_answers(tmp_path: Path) -> None:
    result = genesys(
        "eval",
        "--scenario",
        str(SCENARIO),
        "--split",
        "holdout",
        "--limit",
        "3",
        "--data-dir",
        str(tmp_path),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # No adapter in production: the base model answers, and knows nothing of the invented library.
    assert report["model"] == "base" and report["split"] == "holdout"
    assert report["total"] == 3 and len(report["items"]) == 3
    assert report["accuracy"] == report["right"] / 3
    first = report["items"][0]
    assert first["question"] == "Which call gives me a fresh fernwick task queue?"
    assert first["expected"] == ["sprout"] and first["answer"]
    assert "asking base: 3/3" in result.stderr


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    assert "scenario file not found" in one_line_error(
        genesys("eval", "--scenario", str(tmp_path / "nope.jsonl"), "--data-dir", str(tmp_path))
    )
    assert "--split must be prompts or holdout" in one_line_error(
        genesys("eval", "--scenario", str(SCENARIO), "--split", "train", "--data-dir", str(tmp_path))
    )
    assert "v7" in one_line_error(
        genesys("eval", "--scenario", str(SCENARIO), "--model", "v7", "--data-dir", str(tmp_path))
    )


def test_train_on_an_empty_store_stops_with_the_reason(tmp_path: Path) -> None:
    result = genesys("train", "--data-dir", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert result.stdout.strip().splitlines()[0] == "no_data: no interactions yet: nothing to learn from"
    assert "Traceback" not in result.stderr


def test_monitor_once_shows_the_latest_run(tmp_path: Path) -> None:
    first_line = genesys("monitor", "--once", "--data-dir", str(tmp_path)).stdout.splitlines()[0]
    assert first_line == "no training run yet"  # then KPIs, alerts, rollout: tests/test_cli_monitor.py

    store = Store(f"sqlite:///{tmp_path / 'genesys.db'}")
    store.training_runs.create(TrainingRun(id="run-1", output_dir=str(tmp_path / "runs" / "run-1")))
    store.training_runs.mark_running("run-1", pid=None, phase="sft")
    store.training_runs.add_progress(
        "run-1",
        TrainingProgress(step=12, total_steps=40, epoch=1.2, loss=0.8123, tokens_per_s=104.0, eta_s=95.0),
    )
    store.close()

    line = genesys("monitor", "--once", "--data-dir", str(tmp_path)).stdout.splitlines()[0]
    assert line == "run-1: running, sft, step 12/40, loss 0.8123, 104 tokens/s, ETA 95 s"
    shown = json.loads(genesys("monitor", "--once", "--json", "--data-dir", str(tmp_path)).stdout)["run"]
    assert (shown["id"], shown["step"], shown["total_steps"]) == ("run-1", 12, 40)
    assert "run-9" in one_line_error(
        genesys("monitor", "--once", "--run", "run-9", "--data-dir", str(tmp_path))
    )


def test_the_seeds_scripts_are_the_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GENESYS_")}
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / name), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        )  # fmt: skip

    assert script("monitor_training.py", "--once", "--data-dir", str(tmp_path)).stdout.splitlines()[0] == (
        "no training run yet"
    )
    analysis = json.loads(script("analyze_interaction_data.py", "--json", "--data-dir", str(tmp_path)).stdout)
    assert analysis["interactions"] == 0
    trigger = script("manual_training_trigger.py", "--data-dir", str(tmp_path))
    assert trigger.returncode == 1 and trigger.stdout.startswith("no_data: ")
    assert "Usage" in script("start_training_system.py", "--help").stdout
