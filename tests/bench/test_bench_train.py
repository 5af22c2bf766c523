"""``genesys bench train`` on a tiny random-weight llama: the structure of the result, not the timings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genesys.bench.train import TrainBenchResult, format_table, run_train_bench
from genesys.cli import app


def test_bench_train_measures_both_sides_on_the_same_batches(tiny_dir: Path, tmp_path: Path) -> None:
    result = run_train_bench(
        model_path=tiny_dir, cache_dir=tmp_path, steps=3, warmup_steps=1, batch_size=2, seq_len=16, repeats=2
    )

    assert isinstance(result, TrainBenchResult)
    assert (result.steps, result.warmup_steps, result.batch_size, result.seq_len) == (3, 1, 2, 16)
    # ABBA: drift in machine load hits both sides alike.
    assert [r.side for r in result.runs] == ["bare", "trainer", "trainer", "bare"]
    for run in result.runs:
        assert run.timed_steps == 3
        assert run.tokens_per_s > 0 and run.step_ms_median > 0
    assert result.ratio == pytest.approx(result.trainer_tokens_per_s / result.bare_tokens_per_s)
    assert result.passed == (result.ratio >= 0.95)
    # Same batches, same steps, same schedule: the two sides end at (nearly) the same loss.
    bare, trainer = result.runs[0].final_loss, result.runs[1].final_loss
    assert trainer == pytest.approx(bare, rel=1e-3)
    table = format_table(result)
    assert "median tokens/s" in table and "ratio" in table


def test_bench_train_command_prints_json(
    tiny_dir: Path, tmp_path: Path, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "train",
            "--data-dir",
            str(tmp_path / "data"),
            "--model",
            str(tiny_dir),
            "--steps",
            "2",
            "--warmup-steps",
            "1",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--repeats",
            "1",
            "--json-out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert {"bare_tokens_per_s", "trainer_tokens_per_s", "ratio", "passed", "runs"} <= set(payload)
    assert payload["lora_rank"] == 16
