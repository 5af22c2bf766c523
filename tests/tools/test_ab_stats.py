"""A/B statistics: arms counted from real stored interactions and feedback, and the decision of the
test: too early below the minimum sample, a real difference found, noise not mistaken for one."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from genesys.runtime.store import Feedback, Interaction, Store
from genesys.tools.ab_stats import (
    AbCriteria,
    ArmStats,
    answer_verdict,
    arm_stats,
    decide,
    evaluate_arms,
    two_proportion_test,
)
from genesys.tools.quality import QualityBounds, assess_quality

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
_ids = itertools.count()


def record(
    store: Store,
    *,
    arm: str,
    version: str,
    at: datetime = T0 + timedelta(minutes=1),
    status: str = "completed",
    latency_ms: float = 100.0,
    feedback: list[dict[str, object]] | None = None,
) -> Interaction:
    interaction = Interaction(
        id=f"chatcmpl-ab{next(_ids)}",
        conversation_id=f"conv-{next(_ids)}",
        user=f"user-{next(_ids)}",
        request_messages=[{"role": "user", "content": "How do I reverse a list?"}],
        answer="Use reversed(items) or items[::-1].",
        model_version=version,
        ab_arm=arm,
        latency_ms=latency_ms,
        status=status,  # type: ignore[arg-type]
        error="engine failed" if status == "error" else None,
        created_at=at,
    )
    store.interactions.record(interaction)
    for fields in feedback or []:
        store.feedback.upsert(Feedback(interaction_id=interaction.id, **fields))  # type: ignore[arg-type]
    return interaction


def arm(name: str, *, judged: int, positive: int, requests: int | None = None, errors: int = 0) -> ArmStats:
    return ArmStats(
        arm=name,  # type: ignore[arg-type]
        model_version="v1" if name == "production" else "v2",
        requests=requests if requests is not None else judged,
        errors=errors,
        judged=judged,
        positive=positive,
        negative=judged - positive,
    )


CRITERIA = AbCriteria(min_samples_per_arm=100, min_requests_for_errors=50, satisfaction_threshold=0.85)


def test_arm_stats_count_what_the_router_sent_and_what_users_said(store: Store) -> None:
    up, down = {"thumbs": "up"}, {"thumbs": "down"}
    for latency in (100, 200, 300, 400):
        record(store, arm="candidate", version="v2", latency_ms=latency, feedback=[up])
    record(store, arm="candidate", version="v2", feedback=[{"rating": 5}])
    record(
        store, arm="candidate", version="v2", feedback=[down, {"correction": "Use items.reverse() in place."}]
    )
    record(store, arm="candidate", version="v2", feedback=[{"source": "implicit", "signal": "correction"}])
    record(store, arm="candidate", version="v2", feedback=[{"rating": 3}])  # neutral: unjudged
    record(store, arm="candidate", version="v2", feedback=[{"source": "continue", "signal": "autocomplete"}])
    record(store, arm="candidate", version="v2")  # nobody said anything
    record(store, arm="candidate", version="v2", status="error", latency_ms=5)
    # Not in the candidate arm: pinned requests, another version, before the rollout.
    record(store, arm="pinned", version="v2", feedback=[down])
    record(store, arm="candidate", version="v3", feedback=[down])
    record(store, arm="candidate", version="v2", at=T0 - timedelta(minutes=1), feedback=[down])

    stats = arm_stats(store, arm="candidate", model_version="v2", since=T0)

    assert (stats.requests, stats.errors) == (11, 1)
    assert (stats.judged, stats.positive, stats.negative) == (7, 5, 2)
    assert stats.satisfaction == pytest.approx(5 / 7)
    assert stats.corrected == 2 and stats.correction_rate == pytest.approx(2 / 11)
    assert stats.error_rate == pytest.approx(1 / 11)
    # Latency of completed answers only (the error took 5 ms and is not counted).
    assert stats.latency_p50_ms == 100.0 and stats.latency_p95_ms == 400.0
    assert stats.latency_mean_ms == pytest.approx(160.0)  # 100, 200, 300, 400 and six of 100
    empty = arm_stats(store, arm="production", model_version="v1", since=T0)
    assert empty.requests == 0 and empty.satisfaction is None and empty.error_rate == 0.0


@pytest.mark.parametrize(
    ("feedback", "verdict"),
    [
        ([{"thumbs": "up"}], "positive"),
        ([{"rating": 4}], "positive"),
        ([{"fix_worked": True}], "positive"),
        ([{"thumbs": "down"}], "negative"),
        ([{"rating": 2}], "negative"),
        ([{"thumbs": "up", "correction": "Actually, use sorted(items, reverse=True)."}], "negative"),
        ([{"source": "implicit", "signal": "regenerate"}], "negative"),
        ([{"rating": 3}], None),
        ([{"comment": "interesting"}], None),
        ([{"source": "continue", "signal": "autocomplete", "thumbs": "up"}], None),
        ([], None),
    ],
)
def test_the_verdict_is_the_quality_outcome(feedback: list[dict[str, object]], verdict: str | None) -> None:
    interaction = Interaction(
        id="chatcmpl-v",
        conversation_id="c",
        request_messages=[],
        answer="ok",
        model_version="v2",
        latency_ms=1,
        created_at=T0,
    )
    rows = [Feedback(interaction_id="chatcmpl-v", **f) for f in feedback]  # type: ignore[arg-type]
    assert answer_verdict(interaction, rows) == verdict
    outcome = assess_quality(interaction, rows, QualityBounds()).outcome
    assert {"confirmed": "positive", "learning": "negative", "unjudged": None}[outcome] == verdict


def test_two_proportion_test_known_values() -> None:
    test = two_proportion_test("satisfaction", 75, 100, 90, 100)
    assert test.difference == pytest.approx(0.15)
    assert test.z == pytest.approx(2.7915, abs=1e-3)
    assert test.p_higher == pytest.approx(0.00262, abs=5e-5)
    assert test.p_lower == pytest.approx(1 - test.p_higher)
    same = two_proportion_test("satisfaction", 100, 100, 50, 50)
    assert (same.z, same.p_higher) == (0.0, 0.5)
    with pytest.raises(ValueError):
        two_proportion_test("satisfaction", 1, 0, 1, 1)


def test_below_the_minimum_sample_it_says_continue() -> None:
    # A difference that would be glaring, but production has 99 judged answers of the 100 needed.
    decision = decide(
        arm("production", judged=99, positive=40),
        arm("candidate", judged=300, positive=290),
        CRITERIA,
        final=True,
    )
    assert (decision.action, decision.finding) == ("continue", "insufficient_samples")
    assert "need 100 per arm" in decision.reasons[0]


def test_a_real_difference_is_found_at_the_end() -> None:
    production, candidate = (
        arm("production", judged=200, positive=160),
        arm("candidate", judged=200, positive=186),
    )
    interim = decide(production, candidate, CRITERIA, final=False)
    assert (interim.action, interim.finding) == ("continue", "healthy")  # promotion waits for the end
    final = decide(production, candidate, CRITERIA, final=True)
    assert (final.action, final.finding) == ("promote", "better")
    assert final.satisfaction_test is not None and final.satisfaction_test.p_higher < 0.001


def test_noise_is_not_a_difference() -> None:
    decision = decide(
        arm("production", judged=200, positive=170),
        arm("candidate", judged=200, positive=174),
        CRITERIA,
        final=True,
    )
    assert (decision.action, decision.finding) == ("rollback", "not_better")
    # Many tests of two arms drawn from the same 85%: about alpha of them look better, no more.
    promoted = 0
    for seed in range(200):
        rng = random.Random(seed)
        hits = [sum(rng.random() < 0.85 for _ in range(300)) for _ in range(2)]
        verdict = decide(
            arm("production", judged=300, positive=hits[0]),
            arm("candidate", judged=300, positive=hits[1]),
            CRITERIA,
            final=True,
        )
        promoted += verdict.action == "promote"
    assert promoted <= 20  # alpha 0.05 of 200 is 10; the bound leaves room for chance


def test_degradation_rolls_back_but_a_drop_within_tolerance_does_not() -> None:
    degraded = decide(
        arm("production", judged=150, positive=135),
        arm("candidate", judged=150, positive=105),
        CRITERIA,
        final=False,
    )
    assert (degraded.action, degraded.finding) == ("rollback", "degradation")
    assert degraded.reasons[0].startswith("degradation: satisfaction 70.0% vs 90.0%")
    # 1 point lower on a huge sample is significant, but within max_degradation (2 points).
    slight = decide(
        arm("production", judged=40000, positive=36000),
        arm("candidate", judged=40000, positive=35600),
        CRITERIA,
        final=False,
    )
    assert slight.satisfaction_test is not None and slight.satisfaction_test.p_lower < 0.05
    assert slight.action == "continue"


def test_better_but_below_the_satisfaction_threshold_is_not_promoted() -> None:
    decision = decide(
        arm("production", judged=200, positive=120),
        arm("candidate", judged=200, positive=160),
        CRITERIA,
        final=True,
    )
    assert (decision.action, decision.finding) == ("rollback", "below_threshold")


def test_an_error_spike_rolls_back_before_any_satisfaction_sample() -> None:
    production = arm("production", judged=0, positive=0, requests=200, errors=1)
    spike = decide(
        production, arm("candidate", judged=0, positive=0, requests=60, errors=9), CRITERIA, final=False
    )
    assert (spike.action, spike.finding) == ("rollback", "error_spike")
    assert spike.error_test is not None and spike.error_test.p_higher < 0.05
    # One error in 60 is no spike; neither are 9 errors before min_requests_for_errors requests.
    one = decide(
        production, arm("candidate", judged=0, positive=0, requests=60, errors=1), CRITERIA, final=False
    )
    early = decide(
        production, arm("candidate", judged=0, positive=0, requests=40, errors=9), CRITERIA, final=False
    )
    assert one.finding == early.finding == "insufficient_samples"


def test_evaluate_arms_reads_both_arms_from_the_store(store: Store) -> None:
    for i in range(12):
        record(store, arm="production", version="v1", feedback=[{"thumbs": "up" if i < 6 else "down"}])
        record(store, arm="candidate", version="v2", feedback=[{"thumbs": "up"}])
    criteria = CRITERIA.model_copy(update={"min_samples_per_arm": 10, "satisfaction_threshold": 0.9})
    decision = evaluate_arms(
        store, production_version="v1", candidate_version="v2", since=T0, criteria=criteria, final=True
    )
    assert (decision.production.satisfaction, decision.candidate.satisfaction) == (0.5, 1.0)
    assert decision.action == "promote"
    assert decision.model_dump(mode="json")["candidate"]["satisfaction"] == 1.0
