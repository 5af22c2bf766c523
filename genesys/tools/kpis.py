"""The seed's KPIs, computed from the store: each with its definition, target, window and status.

All per-answer KPIs look at the interactions created in ``[now - window, now)`` (24 h by default);
the learning rate compares two consecutive ``learning_window`` periods (7 days each by default).

- **success_rate** (> 90%): of the requests that ended (``completed`` or ``error``; a request the
  user cancelled is left out), the share that completed and were not judged negative.
- **response_time** (< 5 s): the 95th percentile (nearest rank) of the latency of the completed
  answers, in seconds. Stricter than the seed's mean: a few very slow answers show.
- **user_satisfaction** (> 85%, ``quality_gates.user_satisfaction_threshold``): of the answers users
  judged, the positive share; a verdict is ``answer_verdict`` of ``genesys.tools.ab_stats``, the
  same rule the A/B test uses (approval positive, correction or rejection negative, no feedback or a
  rating of 3 not judged).
- **learning_rate** (+5 points per week): user satisfaction over the last ``learning_window`` minus
  user satisfaction over the ``learning_window`` before it, in points of a fraction (0.05 = +5%).
- **knowledge_coverage** (> 95%): of the completed answers, the share no user corrected (no usable
  correction text and no implicit correction read from the next message): a corrected answer is a
  topic Genesys did not know.
- **technical_precision** (> 95%): of the judged ``code`` and ``debug`` answers, the share not judged
  negative (i.e. positive).

**Status**: ``ok`` when the target is met (at or past it: ``>=`` for a "more than" target, ``<=``
for a "less than" one); ``warning`` when it is missed by at most ``warning_margin`` of the target
(5% by default, relative: a success rate of 85.5% against 90% is a warning, 85.4% is breached); and
``breached`` beyond. ``no_data`` when fewer than ``min_samples`` (20 by default) samples count: for
the learning rate, when either week has fewer than ``min_samples`` judged answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from genesys.runtime.store import Feedback, Interaction, Store, utcnow
from genesys.tools.ab_stats import answer_verdict
from genesys.tools.quality import usable_correction

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

KpiName = Literal[
    "success_rate",
    "response_time",
    "user_satisfaction",
    "learning_rate",
    "knowledge_coverage",
    "technical_precision",
]
KpiStatus = Literal["ok", "warning", "breached", "no_data"]
Comparison = Literal[">", "<"]

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_LEARNING_WINDOW = timedelta(days=7)
MIN_SAMPLES = 20
WARNING_MARGIN = 0.05
TECHNICAL_TYPES = frozenset({"code", "debug"})
_PAGE = 2_000


class Kpi(BaseModel):
    """One KPI now: its value against its target, over its window."""

    name: KpiName
    value: float | None = Field(description="None when there are too few samples (status no_data).")
    target: float
    comparison: Comparison = Field(description="'>': the value should reach the target; '<': stay under.")
    unit: str
    window: str = Field(description="The period the value covers, e.g. '24h' or '7d vs previous 7d'.")
    status: KpiStatus
    definition: str
    samples: int = Field(description="What the value was computed from (see the definition).")


class KpiReport(BaseModel):
    data: list[Kpi]
    computed_at: datetime


def kpi_status(
    value: float | None,
    target: float,
    comparison: Comparison,
    *,
    samples: int,
    min_samples: int = MIN_SAMPLES,
    warning_margin: float = WARNING_MARGIN,
) -> KpiStatus:
    """ok / warning / breached against the target (see the module docstring); no_data below the minimum."""
    if value is None or samples < min_samples:
        return "no_data"
    slack = abs(target) * warning_margin
    if comparison == ">":
        return "ok" if value >= target else "warning" if value >= target - slack else "breached"
    return "ok" if value <= target else "warning" if value <= target + slack else "breached"


def _window_label(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86_400 == 0 and seconds >= 2 * 86_400:  # 24h, not 1d
        return f"{seconds // 86_400}d"
    if seconds % 3_600 == 0:
        return f"{seconds // 3_600}h"
    return f"{seconds // 60}min"


def _interactions(store: Store, since: datetime, until: datetime) -> Iterator[Interaction]:
    offset = 0
    while True:
        page = store.interactions.list(since=since, limit=_PAGE, offset=offset)
        for interaction in page:
            if interaction.created_at < until:
                yield interaction
        if len(page) < _PAGE:
            return
        offset += _PAGE


def _corrected(feedback: list[Feedback]) -> bool:
    return any(
        usable_correction(f) or (f.source == "implicit" and f.signal == "correction") for f in feedback
    )


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass(frozen=True)
class _Answer:
    interaction: Interaction
    verdict: Literal["positive", "negative"] | None
    corrected: bool


def _satisfaction(answers: list[_Answer]) -> tuple[float | None, int]:
    judged = [a for a in answers if a.verdict is not None]
    positive = sum(a.verdict == "positive" for a in judged)
    return (positive / len(judged) if judged else None), len(judged)


def compute_kpis(
    store: Store,
    settings: Settings,
    *,
    now: datetime | None = None,
    window: timedelta = DEFAULT_WINDOW,
    learning_window: timedelta = DEFAULT_LEARNING_WINDOW,
    min_samples: int = MIN_SAMPLES,
    warning_margin: float = WARNING_MARGIN,
) -> KpiReport:
    """The six KPIs at ``now`` (default: the current time). Raises ``ValueError`` for an empty window."""
    if window <= timedelta(0) or learning_window <= timedelta(0):
        raise ValueError("the windows must be positive")
    now = now or utcnow()
    since = now - max(window, 2 * learning_window)
    interactions = list(_interactions(store, since, now))
    feedback = store.feedback.for_interactions([i.id for i in interactions])
    answers = [
        _Answer(
            interaction=i,
            verdict=answer_verdict(i, feedback[i.id]),
            corrected=_corrected(feedback[i.id]),
        )
        for i in interactions
    ]
    recent = [a for a in answers if a.interaction.created_at >= now - window]
    label = _window_label(window)

    def kpi(
        name: KpiName,
        value: float | None,
        target: float,
        comparison: Comparison,
        unit: str,
        samples: int,
        definition: str,
        window_label: str = label,
    ) -> Kpi:
        status = kpi_status(
            value,
            target,
            comparison,
            samples=samples,
            min_samples=min_samples,
            warning_margin=warning_margin,
        )
        return Kpi(
            name=name,
            value=None if status == "no_data" else value,
            target=target,
            comparison=comparison,
            unit=unit,
            window=window_label,
            status=status,
            definition=definition,
            samples=samples,
        )

    ended = [a for a in recent if a.interaction.status in ("completed", "error")]
    succeeded = sum(a.interaction.status == "completed" and a.verdict != "negative" for a in ended)
    completed = [a for a in recent if a.interaction.status == "completed"]
    latencies = sorted(a.interaction.latency_ms / 1000 for a in completed)
    satisfaction, judged = _satisfaction(recent)
    this_week, this_judged = _satisfaction(
        [a for a in answers if a.interaction.created_at >= now - learning_window]
    )
    last_week, last_judged = _satisfaction(
        [a for a in answers if now - 2 * learning_window <= a.interaction.created_at < now - learning_window]
    )
    learning = this_week - last_week if this_week is not None and last_week is not None else None
    technical = [
        a for a in recent if a.interaction.interaction_type in TECHNICAL_TYPES and a.verdict is not None
    ]
    week = _window_label(learning_window)
    data = [
        kpi(
            "success_rate",
            succeeded / len(ended) if ended else None,
            0.90,
            ">",
            "ratio",
            len(ended),
            "Share of the requests that ended (completed or error) which completed and were not judged "
            "negative by users.",
        ),
        kpi(
            "response_time",
            round(_percentile(latencies, 0.95), 3) if latencies else None,
            5.0,
            "<",
            "s",
            len(latencies),
            "95th percentile (nearest rank) of the latency of the completed answers, in seconds.",
        ),
        kpi(
            "user_satisfaction",
            satisfaction,
            settings.quality_gates.user_satisfaction_threshold,
            ">",
            "ratio",
            judged,
            "Share of the answers users judged (thumbs, rating, fix result, correction) that they "
            "judged positively, by the A/B test's rule.",
        ),
        kpi(
            "learning_rate",
            learning,
            0.05,
            ">",
            "points",
            min(this_judged, last_judged),
            f"User satisfaction over the last {week} minus user satisfaction over the {week} before, in "
            "points of a fraction (0.05 = +5%); samples: judged answers of the smaller period.",
            window_label=f"{week} vs previous {week}",
        ),
        kpi(
            "knowledge_coverage",
            sum(not a.corrected for a in completed) / len(completed) if completed else None,
            0.95,
            ">",
            "ratio",
            len(completed),
            "Share of the completed answers that no user corrected (explicitly or in their next message).",
        ),
        kpi(
            "technical_precision",
            sum(a.verdict == "positive" for a in technical) / len(technical) if technical else None,
            0.95,
            ">",
            "ratio",
            len(technical),
            "Share of the judged code and debug answers that users did not judge wrong.",
        ),
    ]
    return KpiReport(data=data, computed_at=now)
