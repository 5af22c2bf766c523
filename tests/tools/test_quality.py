"""Quality scores, reasons and tiers of answers, from their feedback and from the answers themselves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import ConfigError
from genesys.runtime.settings import load_settings
from genesys.runtime.store import Feedback, Interaction
from genesys.tools.quality import (
    CORRECTED_CAP,
    PRIOR,
    QualityAssessment,
    QualityBounds,
    assess_quality,
    best_correction,
)
from tests.tools.conftest import START, make_interaction

BOUNDS = QualityBounds(premium=0.7, discard=0.4)
QUESTION = "How do I define props in a Vue 3 component with the composition API?"
CORRECTION = "In Vue 3 with <script setup>, call defineProps({ title: String }) and read props.title."


def assess(feedback: list[dict[str, Any]] | None = None, **fields: Any) -> QualityAssessment:
    interaction = make_interaction(fields.pop("question", QUESTION), **fields)
    rows = [Feedback(interaction_id=interaction.id, **row) for row in feedback or []]
    return assess_quality(interaction, rows, BOUNDS)


def test_scores_order_thumbs_up_above_unjudged_above_thumbs_down() -> None:
    up = assess([{"thumbs": "up"}])
    unjudged = assess()
    down = assess([{"thumbs": "down"}])
    assert up.score > unjudged.score > down.score
    assert (up.tier, unjudged.tier, down.tier) == ("premium", "standard", "discarded")
    assert (up.outcome, unjudged.outcome, down.outcome) == ("confirmed", "unjudged", "learning")
    assert unjudged.score == PRIOR
    assert all(0 <= a.score <= 1 for a in (up, unjudged, down))


def test_every_signal_leaves_a_reason() -> None:
    assert assess().reasons == [f"no feedback: prior {PRIOR:.2f}"]
    up = assess([{"thumbs": "up", "rating": 5}])
    assert up.reasons[0] == f"prior {PRIOR:.2f}"
    # Thumbs and rating in one row are one opinion: the stronger one counts.
    assert up.reasons[1:] == ["thumbs up (explicit) +0.30"]
    fix = assess([{"fix_worked": False}], question="My script crashes with KeyError: 'id', how do I fix it?")
    assert "fix did not work (explicit) -0.35" in fix.reasons
    truncated = assess(finish_reason="length")
    assert "truncated: finish_reason=length -0.25" in truncated.reasons
    assert truncated.score == pytest.approx(PRIOR - 0.25)


def test_ratings_move_the_score_both_ways() -> None:
    scores = [assess([{"rating": r}]).score for r in (1, 2, 3, 4, 5)]
    assert scores == sorted(scores) and len(set(scores)) == 5
    assert assess([{"rating": 3}]).outcome == "unjudged"
    assert assess([{"rating": 4}]).outcome == "confirmed"
    assert assess([{"rating": 2}]).outcome == "learning"


def test_a_corrected_answer_scores_low_but_is_flagged_for_its_correction() -> None:
    corrected = assess([{"thumbs": "down", "correction": CORRECTION}])
    assert corrected.has_correction and corrected.correction_source == "explicit"
    assert corrected.score <= CORRECTED_CAP
    assert corrected.tier == "discarded" and corrected.outcome == "learning"
    assert "corrected: correction available (explicit)" in corrected.reasons
    # Even a thumbs up does not make a corrected answer good data: its correction does.
    mixed = assess([{"thumbs": "up", "correction": CORRECTION}])
    assert mixed.has_correction and mixed.score <= CORRECTED_CAP and mixed.tier != "premium"
    assert mixed.outcome == "learning"
    # "no" is a rejection, not a correction one can train on.
    bare = assess([{"correction": "no"}])
    assert not bare.has_correction


def test_implicit_and_continue_signals() -> None:
    implicit = assess(
        [{"source": "implicit", "signal": "correction", "thumbs": "down", "correction": CORRECTION}]
    )
    assert implicit.has_correction and implicit.correction_source == "implicit"
    assert "corrected in next message (implicit) -0.35" in implicit.reasons
    regenerate = assess([{"source": "implicit", "signal": "regenerate", "thumbs": "down"}])
    assert regenerate.outcome == "learning" and not regenerate.has_correction
    assert PRIOR - 0.35 < regenerate.score < PRIOR  # milder than a thumbs down
    after_fix = assess(
        [{"source": "implicit", "signal": "error_after_fix", "thumbs": "down", "fix_worked": False}]
    )
    assert after_fix.score == pytest.approx(PRIOR - 0.35)  # one signal, not three
    chat_up = assess([{"source": "continue", "signal": "chatFeedback", "thumbs": "up"}])
    assert chat_up.outcome == "confirmed" and chat_up.tier == "premium"
    # An accepted autocomplete is weak evidence: better than nothing, not a confirmation.
    accepted = assess([{"source": "continue", "signal": "autocomplete", "thumbs": "up"}])
    assert PRIOR < accepted.score < chat_up.score
    assert accepted.outcome == "unjudged" and accepted.positive_evidence and accepted.tier == "standard"
    rejected = assess([{"source": "continue", "signal": "editOutcome", "thumbs": "down"}])
    assert rejected.outcome == "unjudged" and rejected.negative_evidence and rejected.score < PRIOR


def test_answer_problems_lower_the_score() -> None:
    error = assess(status="error", answer="", error="engine failed")
    assert (error.score, error.tier) == (0.0, "discarded")
    assert error.reasons[-2:] == ["status: error", "capped at 0.00"]
    empty = assess(answer="   ")
    assert (empty.score, empty.tier) == (0.0, "discarded")
    # A thumbs up does not rescue an answer that was cut off by a cancelled request.
    cancelled = assess([{"thumbs": "up"}], status="cancelled", answer="Start with")
    assert cancelled.score <= 0.2 and cancelled.tier == "discarded"
    looping = assess(answer="\n".join(["Use the computed property."] * 20))
    assert "repetitive answer -0.25" in looping.reasons
    unclosed = assess(answer="Like this:\n```python\nx = 1\n")
    assert "unclosed code block -0.10" in unclosed.reasons
    short = assess(answer="Yes.")
    assert "answer very short for the question -0.15" in short.reasons
    # Tool calls are an answer, even without text.
    calls = assess(answer="", tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f"}}])
    assert calls.score == PRIOR


def test_tiers_follow_the_configured_bounds(tmp_path: Path) -> None:
    # An unjudged answer is never premium, whatever the threshold: premium needs positive evidence.
    low = QualityBounds(premium=0.5, discard=0.2)
    interaction = make_interaction(QUESTION)
    assert assess_quality(interaction, [], low).tier == "standard"
    up = [Feedback(interaction_id=interaction.id, source="continue", signal="autocomplete", thumbs="up")]
    assert assess_quality(interaction, up, low).tier == "premium"
    assert assess_quality(interaction, up, BOUNDS).tier == "standard"
    truncated = make_interaction(QUESTION, finish_reason="length")  # 0.25
    assert assess_quality(truncated, [], BOUNDS).tier == "discarded"
    assert assess_quality(truncated, [], low).tier == "standard"
    settings = load_settings(
        data_dir=tmp_path, data_collection={"quality_threshold": 0.8, "discard_threshold": 0.3}
    )
    assert QualityBounds.from_settings(settings) == QualityBounds(premium=0.8, discard=0.3)
    with pytest.raises(ConfigError, match="discard_threshold"):
        load_settings(data_dir=tmp_path, data_collection={"quality_threshold": 0.5, "discard_threshold": 0.6})
    with pytest.raises(ValueError, match="above the premium bound"):
        QualityBounds(premium=0.3, discard=0.5)


def test_best_correction_prefers_explicit_then_the_newest() -> None:
    interaction: Interaction = make_interaction(QUESTION)

    def row(source: str, text: str, minutes: int) -> Feedback:
        when = START + timedelta(minutes=minutes)
        signal = "user" if source == "explicit" else "correction"
        return Feedback(
            interaction_id=interaction.id,
            source=source,  # type: ignore[arg-type]
            signal=signal,
            correction=text,
            created_at=when,
            updated_at=when,
        )

    implicit = row("implicit", "the implicit correction text", 9)
    old, new = (
        row("explicit", "the older explicit correction", 1),
        row("explicit", "the newer explicit one", 2),
    )
    chosen = best_correction([implicit, old, new])
    assert chosen is not None and chosen.correction == "the newer explicit one"
    assert best_correction([implicit]) is implicit
    assert best_correction([]) is None
