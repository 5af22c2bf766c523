"""``genesys bench serve`` end to end: the real server in a subprocess against raw llama-cpp-python."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genesys.bench.serve import ServeBenchResult, format_table, run_serve_bench


@pytest.mark.slow
def test_bench_serve_measures_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)

    result = run_serve_bench(requests=2, max_tokens=16, data_dir=tmp_path / "data", n_threads=2)

    assert isinstance(result, ServeBenchResult)
    assert (result.requests, result.max_tokens, result.n_threads) == (2, 16, 2)
    # Two measured requests per side, in ABBA order; warm-ups are not kept.
    assert [(r.side, r.prompt_index) for r in result.runs] == [
        ("raw", 0),
        ("api", 0),
        ("api", 1),
        ("raw", 1),
    ]
    for run in result.runs:
        assert 0 < run.completion_tokens <= 16
        assert run.ttft_ms > 0 and run.tokens_per_s > 0 and run.overall_tokens_per_s > 0
        assert run.total_ms >= run.ttft_ms
        assert run.other_cpu_pct is None or 0 <= run.other_cpu_pct <= 100
    for side in (result.raw, result.api):
        assert side.ttft_ms > 0 and side.tokens_per_s > 0 and side.overall_tokens_per_s > 0
    # Ratios are api / raw of the medians; the budget is derived from raw. Timings are not asserted.
    assert result.tokens_per_s_ratio == pytest.approx(result.api.tokens_per_s / result.raw.tokens_per_s)
    assert result.ttft_ratio == pytest.approx(result.api.ttft_ms / result.raw.ttft_ms)
    assert result.ttft_budget_ms == pytest.approx(1.2 * result.raw.ttft_ms + 20)
    assert result.paired_tokens_per_s_ratio > 0 and result.paired_ttft_ratio > 0
    assert result.passed == (result.pass_tokens_per_s and result.pass_ttft)
    # Greedy decoding of the same prompt on the same weights: the server adds nothing to the prompt.
    assert result.same_output
    # The server ran on the given data dir and recorded the interactions there.
    assert (tmp_path / "data" / "genesys.db").is_file()
    assert "tokens/s (decode)" in format_table(result)
