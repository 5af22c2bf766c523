"""The one place where the quality gates of a candidate adapter are decided.

- ``primary_improvement``: candidate - baseline >= ``minimum_improvement`` on ``primary_metric``
  (an absolute gain of a fraction: with a baseline of 0 a relative gain means nothing);
- ``validation_score``: the candidate's ``score_metric`` >= ``validation_score_threshold``;
- ``humaneval_guard``: baseline - candidate <= ``guard_tolerance`` on the HumanEval pass rate (when
  HumanEval ran);
- ``judge_guard``: baseline - candidate <= ``judge.tolerance`` on the judge score (when judged).

Every gate says why in one sentence that names the numbers. A metric that was not measured fails
its gate.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from genesys.runtime.settings import QualityGates

Metrics = dict[str, float]
# Float sums like 0.8 - 0.75 must not fail a 0.05 gate by rounding.
_EPSILON = 1e-9


class GateResult(BaseModel):
    """One gate: its verdict, the value it judged, the threshold, and why."""

    name: str
    passed: bool
    value: float | None = Field(description="What the gate compared: a gain, a score or a drop.")
    threshold: float | None
    reason: str


def decide_gates(
    candidate: Metrics,
    baseline: Metrics,
    gates: QualityGates,
    *,
    humaneval: bool,
    judged: bool,
) -> list[GateResult]:
    """The gates for one candidate against its baseline, in a fixed order."""
    results = [
        _improvement(candidate, baseline, gates.primary_metric, gates.minimum_improvement),
        _score(candidate, gates.score_metric, gates.validation_score_threshold),
    ]
    if humaneval:
        results.append(
            _guard("humaneval_guard", candidate, baseline, "humaneval_pass_rate", gates.guard_tolerance)
        )
    if judged:
        tolerance = gates.judge.tolerance if gates.judge is not None else 0.0
        results.append(_guard("judge_guard", candidate, baseline, "judge_score", tolerance))
    return results


def _improvement(candidate: Metrics, baseline: Metrics, metric: str, minimum: float) -> GateResult:
    name = "primary_improvement"
    missing = _missing(name, metric, minimum, candidate, baseline)
    if missing is not None:
        return missing
    new, old = candidate[metric], baseline[metric]
    gain = new - old
    passed = gain >= minimum - _EPSILON
    verdict = "at least" if passed else "less than"
    return GateResult(
        name=name,
        passed=passed,
        value=gain,
        threshold=minimum,
        reason=f"{metric} went from {old:.3f} (baseline) to {new:.3f} (candidate), a gain of {gain:+.3f}: "
        f"{verdict} the {minimum:+.3f} required.",
    )


def _score(candidate: Metrics, metric: str, threshold: float) -> GateResult:
    name = "validation_score"
    missing = _missing(name, metric, threshold, candidate)
    if missing is not None:
        return missing
    value = candidate[metric]
    passed = value >= threshold - _EPSILON
    verdict = "at or above" if passed else "below"
    return GateResult(
        name=name,
        passed=passed,
        value=value,
        threshold=threshold,
        reason=f"the candidate's {metric} is {value:.3f}, {verdict} the threshold {threshold:.3f}.",
    )


def _guard(name: str, candidate: Metrics, baseline: Metrics, metric: str, tolerance: float) -> GateResult:
    missing = _missing(name, metric, tolerance, candidate, baseline)
    if missing is not None:
        return missing
    new, old = candidate[metric], baseline[metric]
    drop = old - new
    passed = drop <= tolerance + _EPSILON
    if drop <= 0:
        change = f"held at {new:.3f}" if drop == 0 else f"rose from {old:.3f} to {new:.3f}"
        reason = f"{metric} {change}: no regression."
    else:
        verdict = "within" if passed else "more than"
        reason = (
            f"{metric} fell from {old:.3f} to {new:.3f} (-{drop:.3f}), "
            f"{verdict} the tolerance {tolerance:.3f}."
        )
    return GateResult(name=name, passed=passed, value=drop, threshold=tolerance, reason=reason)


def _missing(name: str, metric: str, threshold: float, *sides: Metrics) -> GateResult | None:
    if all(metric in side for side in sides):
        return None
    return GateResult(
        name=name, passed=False, value=None, threshold=threshold, reason=f"{metric} was not measured."
    )
