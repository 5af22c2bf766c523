"""The quality gates on hand-made metrics, the report, and the gate settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from genesys.errors import ConfigError
from genesys.runtime.settings import DEFAULT_CONFIG_PATH, QualityGates, load_settings
from genesys.tools.validation import GateResult, ItemResult, ValidationReport, decide_gates

GOOD_CANDIDATE = {"reference_pass_rate": 0.60, "bertscore_f1": 0.85, "humaneval_pass_rate": 0.30}
BASELINE = {"reference_pass_rate": 0.20, "bertscore_f1": 0.70, "humaneval_pass_rate": 0.30}


def _gates(**overrides: Any) -> QualityGates:
    return QualityGates(**overrides)


def _by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {gate.name: gate for gate in results}


def test_a_candidate_that_clears_every_gate() -> None:
    results = decide_gates(GOOD_CANDIDATE, BASELINE, _gates(), humaneval=True, judged=False)
    assert [gate.name for gate in results] == ["primary_improvement", "validation_score", "humaneval_guard"]
    assert all(gate.passed for gate in results), [gate.reason for gate in results]
    gates = _by_name(results)
    assert gates["primary_improvement"].value == pytest.approx(0.40)
    assert gates["primary_improvement"].threshold == 0.05
    assert gates["validation_score"].value == 0.85
    assert gates["humaneval_guard"].reason == "humaneval_pass_rate held at 0.300: no regression."


def test_too_small_a_gain_fails_the_primary_gate_alone() -> None:
    candidate = {**GOOD_CANDIDATE, "reference_pass_rate": 0.22}
    gates = _by_name(decide_gates(candidate, BASELINE, _gates(), humaneval=True, judged=False))
    assert [name for name, gate in gates.items() if not gate.passed] == ["primary_improvement"]
    assert gates["primary_improvement"].reason == (
        "reference_pass_rate went from 0.200 (baseline) to 0.220 (candidate), a gain of +0.020: "
        "less than the +0.050 required."
    )


def test_the_gain_is_absolute_and_exact_at_the_threshold() -> None:
    # From a baseline of 0 a relative gain means nothing; 0.05 is five points of the fraction.
    candidate = {**GOOD_CANDIDATE, "reference_pass_rate": 0.05}
    baseline = {**BASELINE, "reference_pass_rate": 0.0}
    gates = _by_name(decide_gates(candidate, baseline, _gates(), humaneval=False, judged=False))
    assert gates["primary_improvement"].passed
    # 0.8 - 0.75 is 0.04999... in floating point: still exactly the 0.05 required.
    candidate = {**GOOD_CANDIDATE, "reference_pass_rate": 0.8}
    baseline = {**BASELINE, "reference_pass_rate": 0.75}
    assert _by_name(decide_gates(candidate, baseline, _gates(), humaneval=False, judged=False))[
        "primary_improvement"
    ].passed


def test_a_low_score_fails_the_validation_gate_alone() -> None:
    candidate = {**GOOD_CANDIDATE, "bertscore_f1": 0.62}
    gates = _by_name(decide_gates(candidate, BASELINE, _gates(), humaneval=True, judged=False))
    assert [name for name, gate in gates.items() if not gate.passed] == ["validation_score"]
    assert (
        gates["validation_score"].reason
        == "the candidate's bertscore_f1 is 0.620, below the threshold 0.800."
    )


def test_a_humaneval_regression_fails_the_guard_alone() -> None:
    candidate = {**GOOD_CANDIDATE, "humaneval_pass_rate": 0.25}
    gates = _by_name(decide_gates(candidate, BASELINE, _gates(), humaneval=True, judged=False))
    assert [name for name, gate in gates.items() if not gate.passed] == ["humaneval_guard"]
    assert gates["humaneval_guard"].value == pytest.approx(0.05)
    assert gates["humaneval_guard"].reason == (
        "humaneval_pass_rate fell from 0.300 to 0.250 (-0.050), more than the tolerance 0.010."
    )
    # Within the tolerance it passes, and says so.
    tolerant = _by_name(
        decide_gates(candidate, BASELINE, _gates(guard_tolerance=0.05), humaneval=True, judged=False)
    )
    assert (
        tolerant["humaneval_guard"].passed
        and "within the tolerance 0.050" in tolerant["humaneval_guard"].reason
    )


def test_a_judge_regression_fails_the_judge_guard_alone() -> None:
    settings = _gates(judge={"base_url": "http://127.0.0.1:1/v1", "model": "judge", "tolerance": 0.1})
    candidate = {**GOOD_CANDIDATE, "judge_score": 0.5}
    baseline = {**BASELINE, "judge_score": 0.75}
    gates = _by_name(decide_gates(candidate, baseline, settings, humaneval=True, judged=True))
    assert [name for name, gate in gates.items() if not gate.passed] == ["judge_guard"]
    assert (
        gates["judge_guard"].reason
        == "judge_score fell from 0.750 to 0.500 (-0.250), more than the tolerance 0.100."
    )


def test_the_configured_metrics_are_the_ones_judged() -> None:
    settings = _gates(primary_metric="bleu", score_metric="rouge_l", validation_score_threshold=0.5)
    candidate = {"bleu": 0.30, "rouge_l": 0.40}
    baseline = {"bleu": 0.10, "rouge_l": 0.90}
    gates = _by_name(decide_gates(candidate, baseline, settings, humaneval=False, judged=False))
    assert (
        gates["primary_improvement"].passed and "bleu went from 0.100" in gates["primary_improvement"].reason
    )
    assert not gates["validation_score"].passed and "rouge_l is 0.400" in gates["validation_score"].reason


def test_a_metric_that_was_not_measured_fails_its_gate() -> None:
    gates = _by_name(decide_gates({"bertscore_f1": 0.9}, {}, _gates(), humaneval=True, judged=False))
    assert not gates["primary_improvement"].passed
    assert gates["primary_improvement"].reason == "reference_pass_rate was not measured."
    assert not gates["humaneval_guard"].passed
    assert gates["validation_score"].passed


def test_the_report_renders_its_verdict_gates_and_answers() -> None:
    gates = decide_gates(
        {**GOOD_CANDIDATE, "bertscore_f1": 0.5}, BASELINE, _gates(), humaneval=True, judged=False
    )
    report = ValidationReport(
        candidate="v2",
        baseline=None,
        metrics={"candidate": {**GOOD_CANDIDATE, "bertscore_f1": 0.5}, "baseline": BASELINE},
        gates=gates,
        passed=False,
        summary="v2 rejected against base: 1 of 3 gates failed.",
        items=[
            ItemResult(
                id="q1",
                prompt="How do I make a queue?",
                reference="Use `fernwick.sprout(name)`.",
                facts=["sprout"],
                candidate_answer="Call fernwick.sprout('a') | done",
                baseline_answer="",
                candidate_right=True,
                baseline_right=False,
            )
        ],
    )
    text = report.to_markdown()
    assert text.startswith("# Validation of v2 against base: rejected\n")
    assert "| validation_score | FAIL | 0.500 | 0.800 |" in text
    assert "| primary_improvement | pass | 0.400 | 0.050 |" in text
    assert "| reference_pass_rate | 0.600 | 0.200 |" in text
    assert "**v2** (right): Call fernwick.sprout('a') | done" in text
    assert "**base** (wrong): (empty)" in text
    assert report.failed_gates == [gates[1]]
    assert ValidationReport.model_validate_json(report.model_dump_json()) == report


# -- settings ---------------------------------------------------------------------------------------


def test_the_config_file_holds_every_gate_key_with_its_default(settings: Any) -> None:
    from_file = yaml.safe_load(Path(DEFAULT_CONFIG_PATH).read_text(encoding="utf-8"))["quality_gates"]
    assert set(from_file) == set(QualityGates.model_fields)
    defaults = QualityGates().model_dump()
    assert settings.quality_gates.model_dump() == defaults
    assert defaults["primary_metric"] == "reference_pass_rate"
    assert defaults["score_metric"] == "bertscore_f1"
    assert defaults["judge"] is None
    assert len(defaults["humaneval_problems"]) >= 10


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ({"humaneval_problems": ["HE/1"]}, "not HumanEval task ids: HE/1"),
        ({"humaneval_problems": ["HumanEval/1", "HumanEval/1"]}, "listed twice"),
        ({"primary_metric": "judge_score"}, "primary_metric judge_score needs a judge"),
        ({"primary_metric": "accuracy"}, "primary_metric"),
        ({"judge": {"base_url": "http://x/v1"}}, "judge.model"),
        ({"guard_tolerence": 0.1}, "guard_tolerence"),
    ],
)
def test_bad_gate_settings_are_refused(tmp_path: Path, gates: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(data_dir=tmp_path, quality_gates=gates)
