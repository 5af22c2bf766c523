"""``genesys bench ingest`` end to end on tiny sizes: structure and bookkeeping, not timings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genesys.bench.ingest import RATE_TARGET, RATIO_TARGET, IngestBenchResult, format_table, run_ingest_bench
from genesys.bench.synthetic import synthetic_interactions
from genesys.runtime.store import Store
from genesys.tools.tagging import EMBED_MAX_CHARS
from tests.tools.conftest import START


def test_synthetic_interactions_are_varied_and_deterministic() -> None:
    first = synthetic_interactions(300, seed=7, start=START)
    again = synthetic_interactions(300, seed=7, start=START)
    assert [s.interaction.model_dump() for s in first] == [s.interaction.model_dump() for s in again]
    assert len({s.interaction.id for s in first}) == 300
    assert len({s.category for s in first}) == 6
    assert len({s.interaction.interaction_type for s in first}) == 4
    with_feedback = [s for s in first if s.feedback]
    assert 0.2 < len(with_feedback) / 300 < 0.5
    assert {f.source for s in with_feedback for f in s.feedback} == {"explicit", "continue", "implicit"}
    assert any(f.correction for s in with_feedback for f in s.feedback)
    assert {s.interaction.finish_reason for s in first} == {"stop", "length"}


@pytest.mark.slow
def test_bench_ingest_measures_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)

    result = run_ingest_bench(interactions=24, rounds=2, seed=3, data_dir=tmp_path / "data")

    assert isinstance(result, IngestBenchResult)
    assert (result.interactions, result.rounds, result.seed) == (24, 2, 3)
    # The default backend: ONNX Runtime int8 (onnxruntime is installed with chromadb), near ties settled.
    assert (result.backend, result.backend_used) == ("onnx-int8", "onnx-int8")
    assert (result.dtype, result.bf16) == ("float32", False)
    assert result.batch_size == 32 and result.onnx_threads is not None and result.onnx_threads >= 1
    # Rounds alternate their order, so drift in machine load hits both sides alike.
    assert [r.order for r in result.runs] == [["embed", "analyze"], ["analyze", "embed"]]
    for run in result.runs:
        assert run.embed_s > 0 and run.analyze_s > 0 and run.embed_cpu_s > 0 and run.analyze_cpu_s > 0
        assert run.embed_rate == pytest.approx(24 / run.embed_s, rel=0.01)
        assert run.analyze_rate == pytest.approx(24 / run.analyze_s, rel=0.01)
    assert result.ratio == pytest.approx(result.analyze_rate / result.embed_rate, rel=0.01)
    assert result.pass_rate == (result.analyze_rate >= RATE_TARGET)
    assert result.pass_ratio == (result.ratio >= RATIO_TARGET)
    assert result.passed == (result.pass_rate and result.pass_ratio)
    assert 0 < result.mean_embedded_chars <= EMBED_MAX_CHARS
    assert result.mean_embedded_chars < result.mean_question_chars
    assert result.last_summary.analyzed == 24 and sum(result.last_summary.by_tier.values()) == 24
    # The warm-up and every round were analysed in the bench's store.
    store = Store(f"sqlite:///{tmp_path / 'data' / 'genesys.db'}")
    assert len(store.annotations.list(limit=10_000)) == store.interactions.count() == 64 + 2 * 24
    store.close()
    # The categories the analysis stored are torch float32's, checked on every measured interaction.
    assert result.categories is not None
    assert (result.categories.compared, result.categories.agreeing) == (48, 48)
    assert result.categories.agreement == 1.0 and result.categories.moved == {}
    assert all(run.settled >= 0 for run in result.runs)
    assert result.last_summary.settled == result.runs[-1].settled
    table = format_table(result)
    assert "bare embedding" in table and "analyze/embed" in table
    assert "MiniLM on ONNX Runtime int8" in table and "categories = torch float32's: 48/48" in table


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "dtype", "engine"),
    [("torch", "float32", "torch float32"), ("onnx", "float32", "ONNX Runtime float32")],
)
def test_bench_ingest_runs_each_backend_on_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, dtype: str, engine: str
) -> None:
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)

    result = run_ingest_bench(
        interactions=8,
        rounds=1,
        backend=backend,  # type: ignore[arg-type]
        dtype=dtype,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        check_categories=False,
    )

    assert (result.backend, result.backend_used) == (backend, backend)
    assert result.batch_size == (64 if backend == "torch" else 32)
    assert (result.onnx_threads is None) == (backend == "torch")
    assert result.last_summary.analyzed == 8 and f"MiniLM on {engine}" in format_table(result)
    # Float32 backends are exact: nothing to settle, and no comparison was asked for.
    assert result.runs[0].settled == 0 and result.categories is None


@pytest.mark.slow
def test_bench_ingest_command_prints_json_and_a_table(tmp_path: Path) -> None:
    from genesys.cli import app

    out = tmp_path / "ingest.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "ingest",
            "--interactions",
            "8",
            "--rounds",
            "1",
            "--dtype",
            "bfloat16",
            "--no-check-categories",
            "--json-out",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["interactions"] == 8 and len(payload["runs"]) == 1
    assert payload["dtype"] == "bfloat16" and payload["bf16"] is True
    # bfloat16 is a torch precision: auto picks torch for it.
    assert (payload["backend"], payload["backend_used"]) == ("auto", "torch")
    assert payload["categories"] is None
    assert json.loads(result.stdout) == payload
    assert "tagged + scored (analyze)" in result.stderr
    bad = CliRunner().invoke(app, ["bench", "ingest", "--dtype", "float8"])
    assert bad.exit_code == 2 and "--dtype must be" in bad.stderr
    bad = CliRunner().invoke(app, ["bench", "ingest", "--backend", "tensorrt"])
    assert bad.exit_code == 2 and "--backend must be one of auto, torch, onnx, onnx-int8" in bad.stderr
    bad = CliRunner().invoke(app, ["bench", "ingest", "--backend", "onnx", "--dtype", "bfloat16"])
    assert bad.exit_code == 2 and "runs float32 on CPU" in bad.stderr
