"""A/B statistics of a rollout: each arm's satisfaction, correction rate, latency and errors, and the
test that decides whether the candidate goes on, is promoted or is rolled back.

**Satisfaction** of an arm is the share of its *judged* answers that users judged positively. An
answer is judged by the rule of ``assess_quality``'s outcome: *positive* (``confirmed``) when a user
approved it (thumbs up, a rating of 4 or 5, a fix that worked) and nothing speaks against it;
*negative* (``learning``) when a user corrected or rejected it (thumbs down, a rating of 1 or 2, a
fix that failed, a correction from any source, a correction or regenerate read from the next
message). Answers nobody judged (no feedback, a rating of 3, only an accepted or ignored
autocomplete) do not count either way. The **correction rate** is the share of an arm's answers that
got a correction; the **error rate** the share of its requests that ended in an error.

**The test** is a one-sided two-proportion z-test (pooled variance) at ``significance`` (alpha),
applied to satisfaction and to the error rate, with a minimum sample:

- error spike: the candidate has at least ``min_requests_for_errors`` requests, its error rate is
  at least ``error_rate_spike`` above production's and significantly higher -> rollback;
- below ``min_samples_per_arm`` judged answers in either arm -> continue (too early to say);
- degradation: the candidate's satisfaction is significantly lower and by more than
  ``max_degradation`` -> rollback;
- before the end of the test (``final`` false) -> continue;
- at the end: significantly higher satisfaction and at least ``user_satisfaction_threshold`` ->
  promote; otherwise -> rollback (not better, or better but below the threshold).

The rollout looks at the arms at every tick; alpha holds per look, so interim looks only ever
roll back (and then only past ``max_degradation``), and promotion is decided at the end.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, computed_field

from genesys.runtime.store import Feedback, Interaction, Store, utcnow
from genesys.tools.quality import QualityBounds, assess_quality, usable_correction

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

Arm = Literal["production", "candidate"]
Verdict = Literal["positive", "negative"]
AbAction = Literal["continue", "promote", "rollback"]
Finding = Literal[
    "error_spike", "insufficient_samples", "degradation", "healthy", "better", "below_threshold", "not_better"
]


class AbCriteria(BaseModel):
    """The thresholds of the decision (``deploy`` and ``quality_gates`` sections of the settings)."""

    min_samples_per_arm: int = Field(100, ge=1, description="Judged answers each arm needs.")
    min_requests_for_errors: int = Field(
        50, ge=1, description="Candidate requests before errors are compared."
    )
    significance: float = Field(0.05, gt=0, lt=1, description="alpha of the one-sided tests.")
    max_degradation: float = Field(0.02, ge=0, le=1, description="Satisfaction drop tolerated.")
    error_rate_spike: float = Field(0.05, gt=0, le=1, description="Error-rate rise that rolls back.")
    satisfaction_threshold: float = Field(0.85, ge=0, le=1, description="Least satisfaction to promote.")

    @classmethod
    def from_settings(cls, settings: Settings) -> AbCriteria:
        deploy = settings.deploy
        return cls(
            min_samples_per_arm=deploy.min_samples_per_arm,
            min_requests_for_errors=deploy.min_requests_for_errors,
            significance=deploy.significance,
            max_degradation=deploy.max_degradation,
            error_rate_spike=deploy.error_rate_spike,
            satisfaction_threshold=settings.quality_gates.user_satisfaction_threshold,
        )


class ArmStats(BaseModel):
    """What one arm's users got and said."""

    arm: Arm
    model_version: str
    requests: int = 0
    errors: int = 0
    judged: int = Field(0, description="Answers judged positive or negative.")
    positive: int = 0
    negative: int = 0
    corrected: int = Field(0, description="Answers that got a correction.")
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def satisfaction(self) -> float | None:
        """Positive share of the judged answers; None when nothing was judged."""
        return self.positive / self.judged if self.judged else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def correction_rate(self) -> float:
        return self.corrected / self.requests if self.requests else 0.0


class ProportionTest(BaseModel):
    """A one-sided two-proportion z-test (pooled) of the candidate's rate against production's."""

    metric: str
    production_rate: float
    candidate_rate: float
    difference: float = Field(description="candidate - production.")
    z: float
    p_higher: float = Field(description="p-value of 'the candidate's rate is higher'.")
    p_lower: float = Field(description="p-value of 'the candidate's rate is lower'.")


class AbDecision(BaseModel):
    """What the arms say: continue, promote or rollback, and why."""

    action: AbAction
    finding: Finding
    reasons: list[str]
    final: bool = Field(description="Taken at the end of the test (promotion is decided only then).")
    production: ArmStats
    candidate: ArmStats
    satisfaction_test: ProportionTest | None = None
    error_test: ProportionTest | None = None
    evaluated_at: datetime = Field(default_factory=utcnow)

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion_test(
    metric: str, production_hits: int, production_n: int, candidate_hits: int, candidate_n: int
) -> ProportionTest:
    """Compare ``candidate_hits / candidate_n`` with ``production_hits / production_n``.

    Raises ``ValueError`` for an empty arm or more hits than trials.
    """
    if production_n <= 0 or candidate_n <= 0:
        raise ValueError("both arms need at least one trial")
    if not (0 <= production_hits <= production_n and 0 <= candidate_hits <= candidate_n):
        raise ValueError("hits must lie between 0 and the number of trials")
    p_prod, p_cand = production_hits / production_n, candidate_hits / candidate_n
    pooled = (production_hits + candidate_hits) / (production_n + candidate_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / production_n + 1 / candidate_n))
    # Both arms all hits or all misses: nothing tells them apart.
    z = (p_cand - p_prod) / se if se > 0 else 0.0
    return ProportionTest(
        metric=metric,
        production_rate=p_prod,
        candidate_rate=p_cand,
        difference=p_cand - p_prod,
        z=z,
        p_higher=_normal_sf(z),
        p_lower=_normal_sf(-z),
    )


def answer_verdict(interaction: Interaction, feedback: list[Feedback]) -> Verdict | None:
    """positive, negative, or None (unjudged): ``assess_quality``'s outcome, which only feedback decides."""
    if not feedback:
        return None
    outcome = assess_quality(interaction, feedback, QualityBounds()).outcome
    return "positive" if outcome == "confirmed" else "negative" if outcome == "learning" else None


def _corrected(feedback: list[Feedback]) -> bool:
    return any(
        usable_correction(f) or (f.source == "implicit" and f.signal == "correction") for f in feedback
    )


def _stub(interaction_id: str, model_version: str, at: datetime) -> Interaction:
    """An interaction without its texts: the verdict depends on the feedback only."""
    return Interaction(
        id=interaction_id,
        conversation_id="",
        request_messages=[],
        answer="",
        model_version=model_version,
        latency_ms=0,
        created_at=at,
    )


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def arm_stats(
    store: Store, *, arm: Arm, model_version: str, since: datetime, until: datetime | None = None
) -> ArmStats:
    """One arm's numbers: the answers the A/B router sent to ``arm`` and ``model_version`` gave, in
    ``[since, until)``. Pinned requests (``<model>@<version>``) are outside the test and not counted."""
    samples = store.rollouts.arm_samples(arm=arm, model_version=model_version, since=since, until=until)
    stats = ArmStats(arm=arm, model_version=model_version, requests=len(samples))
    latencies: list[float] = []
    for sample in samples:
        if sample.status == "error":
            stats.errors += 1
        elif sample.status == "completed":
            latencies.append(sample.latency_ms)
        verdict = (
            answer_verdict(_stub(sample.interaction_id, model_version, since), sample.feedback)
            if sample.feedback
            else None
        )
        if verdict is not None:
            stats.judged += 1
            if verdict == "positive":
                stats.positive += 1
            else:
                stats.negative += 1
        if _corrected(sample.feedback):
            stats.corrected += 1
    if latencies:
        latencies.sort()
        stats.latency_mean_ms = round(sum(latencies) / len(latencies), 1)
        stats.latency_p50_ms = round(_percentile(latencies, 0.5), 1)
        stats.latency_p95_ms = round(_percentile(latencies, 0.95), 1)
    return stats


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _describe(stats: ArmStats) -> str:
    latency = f", p50 {stats.latency_p50_ms:.0f} ms" if stats.latency_p50_ms is not None else ""
    return (
        f"{stats.arm} {stats.model_version}: satisfaction {_pct(stats.satisfaction)} "
        f"of {stats.judged} judged, {stats.requests} requests, errors {_pct(stats.error_rate)}, "
        f"corrections {_pct(stats.correction_rate)}{latency}"
    )


def decide(production: ArmStats, candidate: ArmStats, criteria: AbCriteria, *, final: bool) -> AbDecision:
    """The decision the arms support (see the module docstring for the rules, in order)."""
    reasons = [_describe(production), _describe(candidate)]
    alpha = criteria.significance

    def result(action: AbAction, finding: Finding, why: str, **tests: ProportionTest | None) -> AbDecision:
        return AbDecision(
            action=action,
            finding=finding,
            reasons=[why, *reasons],
            final=final,
            production=production,
            candidate=candidate,
            **tests,
        )

    error_test: ProportionTest | None = None
    if candidate.requests >= criteria.min_requests_for_errors:
        if production.requests > 0:
            error_test = two_proportion_test(
                "error_rate", production.errors, production.requests, candidate.errors, candidate.requests
            )
            rise, significant = error_test.difference, error_test.p_higher < alpha
            evidence = f"p={error_test.p_higher:.3g}"
        else:  # no production answers to compare with: the rise over zero decides
            rise, significant, evidence = candidate.error_rate, True, "production has no requests"
        if rise >= criteria.error_rate_spike and significant:
            why = (
                f"error spike: candidate errors {_pct(candidate.error_rate)} "
                f"vs {_pct(production.error_rate)} "
                f"(+{rise:.1%} >= {criteria.error_rate_spike:.1%}, {evidence})"
            )
            return result("rollback", "error_spike", why, error_test=error_test)
    least = min(production.judged, candidate.judged)
    if least < criteria.min_samples_per_arm:
        why = (
            f"not enough judged answers yet: production {production.judged}, candidate {candidate.judged} "
            f"(need {criteria.min_samples_per_arm} per arm)"
        )
        return result("continue", "insufficient_samples", why, error_test=error_test)
    test = two_proportion_test(
        "satisfaction", production.positive, production.judged, candidate.positive, candidate.judged
    )
    drop = -test.difference
    if test.p_lower < alpha and drop > criteria.max_degradation:
        why = (
            f"degradation: satisfaction {_pct(test.candidate_rate)} vs {_pct(test.production_rate)} "
            f"(-{drop:.1%} > {criteria.max_degradation:.1%} tolerated, p={test.p_lower:.3g})"
        )
        return result("rollback", "degradation", why, satisfaction_test=test, error_test=error_test)
    if not final:
        p_value = min(test.p_higher, test.p_lower)
        why = f"healthy so far: satisfaction difference {test.difference:+.1%} (p={p_value:.3g})"
        return result("continue", "healthy", why, satisfaction_test=test, error_test=error_test)
    if test.p_higher >= alpha:
        why = (
            f"not better: satisfaction {_pct(test.candidate_rate)} vs {_pct(test.production_rate)} "
            f"(p={test.p_higher:.3g} >= {alpha})"
        )
        return result("rollback", "not_better", why, satisfaction_test=test, error_test=error_test)
    if test.candidate_rate < criteria.satisfaction_threshold:
        why = (
            f"better (p={test.p_higher:.3g}) but satisfaction {_pct(test.candidate_rate)} is below the "
            f"threshold {_pct(criteria.satisfaction_threshold)}"
        )
        return result("rollback", "below_threshold", why, satisfaction_test=test, error_test=error_test)
    why = (
        f"better: satisfaction {_pct(test.candidate_rate)} vs {_pct(test.production_rate)} "
        f"(p={test.p_higher:.3g}), at or above {_pct(criteria.satisfaction_threshold)}"
    )
    return result("promote", "better", why, satisfaction_test=test, error_test=error_test)


def evaluate_arms(
    store: Store,
    *,
    production_version: str,
    candidate_version: str,
    since: datetime,
    criteria: AbCriteria,
    final: bool,
    until: datetime | None = None,
) -> AbDecision:
    """Both arms of a rollout since ``since``, and the decision they support."""
    production = arm_stats(
        store, arm="production", model_version=production_version, since=since, until=until
    )
    candidate = arm_stats(store, arm="candidate", model_version=candidate_version, since=since, until=until)
    return decide(production, candidate, criteria, final=final)
