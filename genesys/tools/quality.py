"""Quality of one answer, in [0, 1], from what was said about it and from the answer itself.

The score starts at a prior (``PRIOR``, an answer nobody judged) and moves with each signal; every
move is kept as a short reason ("thumbs up (explicit) +0.30"). Signals:

- user judgement: thumbs, rating (1-5), ``fix_worked`` (the seed's debug scenario), from explicit
  feedback and Continue's ``chatFeedback``; Continue's accept/reject of an autocomplete or an edit
  (half weight: suggestions are often rejected by typing on, unread); implicit signals read from
  the next message: ``correction`` and ``error_after_fix`` (negative), ``regenerate`` (negative,
  milder). All but the accept/reject events are *strong*: they decide the outcome, ``learning``
  (the seed's ``<topic>_learning``: corrected or rejected) or ``confirmed`` (approved, nothing
  against it); weak signals move the score only;
- a correction (the right answer, from any source): the answer was wrong, so its score is capped at
  ``CORRECTED_CAP``. A corrected interaction becomes good data through its correction, not through
  its answer: ``has_correction`` tells the curator to build its rows from the prompt and
  ``best_correction(...)`` (SFT prompt -> correction, preference chosen = correction, rejected =
  answer);
- the answer itself: error or cancelled status, empty, cut at ``max_tokens`` (finish_reason
  ``length``), far too short for the question, repetitive (a small model looping), an unclosed code
  block, unreasonably long.

Tiers (bounds from ``settings.data_collection``):

- ``premium``: score >= ``quality_threshold`` (0.7) *and* positive evidence (a thumbs up, a rating
  of 4 or 5, a fix that worked, an accepted suggestion) and no correction: an unjudged answer never
  becomes premium, however clean it looks;
- ``discarded``: score < ``discard_threshold`` (0.4);
- ``standard``: everything in between.

The tier grades the stored answer. A corrected interaction is usually ``discarded`` as an answer and
still valuable as data: select it by ``has_correction`` (the annotation tag ``has_correction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, model_validator

from genesys.runtime.interaction_log import last_user_text
from genesys.runtime.store import Feedback, FeedbackSource, Interaction, Tier

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

PRIOR = 0.5
CORRECTED_CAP = 0.15
# A correction shorter than this ("no", "wrong") says the answer was wrong but not what is right.
MIN_CORRECTION_CHARS = 8
MAX_SANE_ANSWER_CHARS = 20_000
# Repetition is judged on the first lines only: bounded work on a huge answer.
_REPETITION_LINES = 400
CORRECTION_TAG = "has_correction"

Polarity = Literal["positive", "negative"]
Outcome = Literal["confirmed", "learning", "unjudged"]
# Continue events where the user judged the answer itself (its thumbs); the others are weaker
# (an autocomplete is rejected by typing on, often without reading it).
_STRONG_CONTINUE = frozenset({"chatFeedback"})
_SOURCE_RANK: dict[str, int] = {"explicit": 0, "continue": 1, "implicit": 2}


class QualityBounds(BaseModel):
    """Tier bounds: premium at or above ``premium`` (with positive evidence), discarded below ``discard``."""

    premium: float = Field(0.7, ge=0, le=1)
    discard: float = Field(0.4, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> QualityBounds:
        if self.discard > self.premium:
            raise ValueError(f"discard bound {self.discard} is above the premium bound {self.premium}")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityBounds:
        """``settings.data_collection.quality_threshold`` and ``.discard_threshold``."""
        collection = settings.data_collection
        return cls(premium=collection.quality_threshold, discard=collection.discard_threshold)


class QualityAssessment(BaseModel):
    """The score of one interaction's answer, why, and what the curator can build from it."""

    interaction_id: str
    score: float = Field(ge=0, le=1)
    tier: Tier
    reasons: list[str]
    outcome: Outcome = Field(
        description="learning: a user corrected or rejected it; confirmed: a user approved it; else unjudged."
    )
    positive_evidence: bool
    negative_evidence: bool
    has_correction: bool = Field(description="A usable correction exists: build training rows from it.")
    correction_source: FeedbackSource | None = None


@dataclass(frozen=True)
class _Signal:
    reason: str
    delta: float
    polarity: Polarity | None
    strong: bool


def usable_correction(feedback: Feedback) -> bool:
    return feedback.correction is not None and len(feedback.correction.strip()) >= MIN_CORRECTION_CHARS


def best_correction(feedback: list[Feedback]) -> Feedback | None:
    """The correction to train on: explicit before Continue before implicit, then the newest."""
    usable = [f for f in feedback if usable_correction(f)]
    if not usable:
        return None
    return min(usable, key=lambda f: (_SOURCE_RANK.get(f.source, 9), -f.updated_at.timestamp()))


def _feedback_signals(feedback: Feedback) -> list[_Signal]:
    """What one feedback row says. Within a row the strongest word per polarity counts once: "thumbs
    down, rating 1, fix failed" is one opinion said three ways."""
    where = feedback.source if feedback.source != "continue" else f"continue {feedback.signal}"
    if feedback.source == "implicit":
        if feedback.signal == "regenerate":
            return [_Signal("regenerated (implicit)", -0.20, "negative", strong=True)]
        label = "error after fix" if feedback.signal == "error_after_fix" else "corrected in next message"
        return [_Signal(f"{label} (implicit)", -0.35, "negative", strong=True)]
    strong = feedback.source == "explicit" or feedback.signal in _STRONG_CONTINUE
    weight = 1.0 if strong else 0.5
    signals: list[_Signal] = []
    if feedback.thumbs == "up":
        signals.append(_Signal(f"thumbs up ({where})", 0.30 * weight, "positive", strong))
    elif feedback.thumbs == "down":
        signals.append(_Signal(f"thumbs down ({where})", -0.35 * weight, "negative", strong))
    if feedback.rating is not None:
        delta = (feedback.rating - 3) * 0.12
        polarity: Polarity | None = "positive" if delta > 0 else "negative" if delta < 0 else None
        signals.append(_Signal(f"rating {feedback.rating}/5 ({where})", delta, polarity, strong=True))
    if feedback.fix_worked is True:
        signals.append(_Signal(f"fix worked ({where})", 0.30, "positive", strong=True))
    elif feedback.fix_worked is False:
        signals.append(_Signal(f"fix did not work ({where})", -0.35, "negative", strong=True))
    best: dict[Polarity | None, _Signal] = {}
    for signal in signals:
        kept = best.get(signal.polarity)
        if kept is None or abs(signal.delta) > abs(kept.delta):
            best[signal.polarity] = signal
    return list(best.values())


def _answer_signals(interaction: Interaction) -> tuple[list[_Signal], float | None]:
    """Signals from the answer itself, and a cap on the score (None: no cap)."""
    if interaction.status == "error":
        return [_Signal("status: error", 0.0, None, strong=False)], 0.0
    answer = interaction.answer or ""
    has_calls = bool(interaction.tool_calls)
    if not answer.strip() and not has_calls:
        return [_Signal("empty answer", 0.0, None, strong=False)], 0.0
    signals: list[_Signal] = []
    cap: float | None = None
    if interaction.status == "cancelled":
        signals.append(_Signal("cancelled: answer incomplete", 0.0, None, strong=False))
        cap = 0.2
    if interaction.finish_reason == "length":
        signals.append(_Signal("truncated: finish_reason=length", -0.25, None, strong=False))
    if not has_calls:
        if len(answer.strip()) < 12 and len(last_user_text(interaction.request_messages)) > 40:
            signals.append(_Signal("answer very short for the question", -0.15, None, strong=False))
        if len(answer) > MAX_SANE_ANSWER_CHARS:
            signals.append(_Signal("answer unusually long", -0.10, None, strong=False))
        lines = [line.strip() for line in answer.splitlines()[:_REPETITION_LINES] if line.strip()]
        if len(lines) >= 8 and len(set(lines)) / len(lines) < 0.5:
            signals.append(_Signal("repetitive answer", -0.25, None, strong=False))
        if answer.count("```") % 2 == 1:
            signals.append(_Signal("unclosed code block", -0.10, None, strong=False))
    return signals, cap


def _fmt(delta: float) -> str:
    return f"{delta:+.2f}"


def assess_quality(
    interaction: Interaction, feedback: list[Feedback], bounds: QualityBounds
) -> QualityAssessment:
    """Score, tier and reasons of one interaction's answer, given all feedback about it."""
    answer_signals, cap = _answer_signals(interaction)
    feedback_signals = [s for f in feedback for s in _feedback_signals(f)]
    correction = best_correction(feedback)
    reasons = [f"prior {PRIOR:.2f}" if feedback_signals else f"no feedback: prior {PRIOR:.2f}"]
    score = PRIOR
    for signal in (*feedback_signals, *answer_signals):
        score += signal.delta
        reasons.append(f"{signal.reason} {_fmt(signal.delta)}" if signal.delta else signal.reason)
    if correction is not None:
        reasons.append(f"corrected: correction available ({correction.source})")
        cap = CORRECTED_CAP if cap is None else min(cap, CORRECTED_CAP)
    if cap is not None and score > cap:
        reasons.append(f"capped at {cap:.2f}")
        score = cap
    score = round(min(1.0, max(0.0, score)), 4)
    positive = any(s.polarity == "positive" for s in feedback_signals)
    negative = correction is not None or any(s.polarity == "negative" for s in feedback_signals)
    strong_negative = correction is not None or any(
        s.polarity == "negative" and s.strong for s in feedback_signals
    )
    strong_positive = any(s.polarity == "positive" and s.strong for s in feedback_signals)
    outcome: Outcome = (
        "learning" if strong_negative else "confirmed" if strong_positive and not negative else "unjudged"
    )
    tier: Tier
    if score < bounds.discard:
        tier = "discarded"
    elif score >= bounds.premium and positive and correction is None:
        tier = "premium"
    else:
        tier = "standard"
    return QualityAssessment(
        interaction_id=interaction.id,
        score=score,
        tier=tier,
        reasons=reasons,
        outcome=outcome,
        positive_evidence=positive,
        negative_evidence=negative,
        has_correction=correction is not None,
        correction_source=correction.source if correction is not None else None,
    )
