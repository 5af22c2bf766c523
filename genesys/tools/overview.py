"""``interaction_overview``: what Genesys has learned from its use so far, in one report (the seed's
``analyze_interaction_data``; ``genesys analyze``).

Read from the store as it is, with aggregate queries (nothing is loaded row by row but the gaps'
examples):

- interactions by type and status, and the time they span;
- from the Analyst's annotations (``analyze_interactions``): interactions by category and tier, the
  mean quality score, and how many interactions are not analysed yet or analysed before their latest
  feedback arrived (``pending_analysis`` lists them, so a caller can bring the annotations up to date
  first, as ``genesys analyze`` does unless told not to);
- satisfaction: of the interactions a user judged explicitly, the share judged positively. "Judged
  explicitly": a thumbs or a rating sent to ``/v1/feedback``, or a thumbs clicked in Continue
  (``chatFeedback``); implicit signals (a correcting next message, a regenerate) and accepted or
  rejected suggestions do not count. "Positively": thumbs up, or, without a thumbs, a rating of 4 or
  5; ``/v1/feedback`` wins over Continue for an interaction judged in both. Compared with
  ``quality_gates.user_satisfaction_threshold``;
- corrections: interactions with a usable correction (at least ``MIN_CORRECTION_CHARS`` characters,
  from any source), also by source;
- knowledge gaps (``find_knowledge_gaps`` with its defaults);
- the latest dataset versions (curated from interactions, or built from docs) with their rows per split.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select

from genesys.runtime.store import Store, utcnow
from genesys.runtime.store.annotations import AnnotationRow
from genesys.runtime.store.feedback import EXPLICIT_SIGNAL, FeedbackRow
from genesys.runtime.store.interactions import InteractionRow
from genesys.tools.analysis import ANALYZER_VERSION
from genesys.tools.gaps import find_knowledge_gaps
from genesys.tools.quality import MIN_CORRECTION_CHARS

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

# Continue's event for a thumbs the user clicked on a chat answer.
CONTINUE_THUMBS_SIGNAL = "chatFeedback"


class Satisfaction(BaseModel):
    judged: int = Field(description="Interactions with an explicit verdict (thumbs or rating).")
    positive: int = Field(description="Of those: thumbs up, or a rating of 4 or 5 without a thumbs.")
    rate: float | None = Field(description="positive / judged; None when nobody judged an answer.")
    target: float = Field(description="quality_gates.user_satisfaction_threshold.")
    meets_target: bool | None


class Corrections(BaseModel):
    interactions: int = Field(description="Interactions with a usable correction, from any source.")
    by_source: dict[str, int] = Field(description="Interactions with a usable correction per source.")


class GapSummary(BaseModel):
    topic: str
    corrections: int
    interactions: int
    correction_rate: float
    key_terms: list[str]


class DatasetSummary(BaseModel):
    version: str
    created_at: datetime
    kind: str = Field(description="'curated' (from interactions) or 'docs' (from indexed docs).")
    topic: str | None = Field(None, description="For a docs dataset: the gap's topic.")
    rows: dict[str, int] = Field(description="SFT rows per split.")
    rebuilt_from: str | None = None
    reproduced: bool | None = None


class InteractionOverview(BaseModel):
    """The whole report; ``empty`` when the store holds no interaction."""

    generated_at: datetime
    store: str
    empty: bool
    interactions: int
    first_at: datetime | None
    last_at: datetime | None
    by_type: dict[str, int]
    by_status: dict[str, int]
    analyzed: int
    pending_analysis: int = Field(
        description="Not analysed, analysed by an older analyser, or analysed before their latest feedback."
    )
    by_category: dict[str, int]
    by_tier: dict[str, int]
    mean_quality: float | None
    satisfaction: Satisfaction
    corrections: Corrections
    gaps: list[GapSummary]
    datasets: list[DatasetSummary]


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def pending_analysis(store: Store) -> list[str]:
    """Ids of the interactions whose annotation is missing, from another analyser version, or older
    than their latest feedback, oldest first."""
    latest_feedback = (
        select(FeedbackRow.interaction_id, func.max(FeedbackRow.updated_at).label("updated_at"))
        .group_by(FeedbackRow.interaction_id)
        .subquery()
    )
    query = (
        select(InteractionRow.id)
        .outerjoin(AnnotationRow, AnnotationRow.interaction_id == InteractionRow.id)
        .outerjoin(latest_feedback, latest_feedback.c.interaction_id == InteractionRow.id)
        .where(
            or_(
                AnnotationRow.interaction_id.is_(None),
                AnnotationRow.analyzer_version != ANALYZER_VERSION,
                and_(
                    latest_feedback.c.updated_at.is_not(None),
                    latest_feedback.c.updated_at > AnnotationRow.analyzed_at,
                ),
            )
        )
        .order_by(InteractionRow.created_at, InteractionRow.id)
    )
    with store.db.reader() as session:
        return [str(i) for i in session.scalars(query).all()]


def _group_counts(store: Store, column: Any) -> dict[str, int]:
    with store.db.reader() as session:
        rows = session.execute(select(column, func.count()).group_by(column)).all()
    return _sorted({str(value): int(n) for value, n in rows})


def _satisfaction(store: Store, target: float) -> Satisfaction:
    query = select(
        FeedbackRow.interaction_id, FeedbackRow.source, FeedbackRow.thumbs, FeedbackRow.rating
    ).where(
        or_(
            and_(FeedbackRow.source == "explicit", FeedbackRow.signal == EXPLICIT_SIGNAL),
            and_(FeedbackRow.source == "continue", FeedbackRow.signal == CONTINUE_THUMBS_SIGNAL),
        ),
        or_(FeedbackRow.thumbs.is_not(None), FeedbackRow.rating.is_not(None)),
    )
    verdicts: dict[str, tuple[int, bool]] = {}  # interaction -> (source rank, positive)
    with store.db.reader() as session:
        for interaction_id, source, thumbs, rating in session.execute(query):
            rank = 0 if source == "explicit" else 1
            good = thumbs == "up" if thumbs is not None else rating is not None and rating >= 4
            if interaction_id not in verdicts or rank < verdicts[interaction_id][0]:
                verdicts[interaction_id] = (rank, good)
    judged = len(verdicts)
    positive = sum(p for _, p in verdicts.values())
    rate = round(positive / judged, 4) if judged else None
    return Satisfaction(
        judged=judged,
        positive=positive,
        rate=rate,
        target=target,
        meets_target=None if rate is None else rate >= target,
    )


def _corrections(store: Store) -> Corrections:
    query = (
        select(FeedbackRow.interaction_id, FeedbackRow.source)
        .where(FeedbackRow.correction.is_not(None))
        .where(func.length(func.trim(FeedbackRow.correction)) >= MIN_CORRECTION_CHARS)
        .distinct()
    )
    with store.db.reader() as session:
        rows = session.execute(query).all()
    return Corrections(
        interactions=len({interaction_id for interaction_id, _ in rows}),
        by_source=_sorted(dict(Counter(source for _, source in rows))),
    )


def _datasets(store: Store, limit: int) -> list[DatasetSummary]:
    out = []
    for dataset in store.datasets.list(limit=limit):
        counts = dataset.counts or {}
        splits = counts.get("splits") or {}
        out.append(
            DatasetSummary(
                version=dataset.version,
                created_at=dataset.created_at,
                kind=str(counts.get("kind", "curated")),
                topic=counts.get("topic"),
                rows={str(s): int((c or {}).get("sft", 0)) for s, c in splits.items()},
                rebuilt_from=dataset.rebuilt_from,
                reproduced=dataset.reproduced,
            )
        )
    return out


def interaction_overview(store: Store, settings: Settings, *, datasets: int = 5) -> InteractionOverview:
    """The report, computed from the store as it is (see the module's docstring for each figure);
    ``datasets``: how many of the latest dataset versions to list."""
    with store.db.reader() as session:
        total, first, last = session.execute(
            select(func.count(), func.min(InteractionRow.created_at), func.max(InteractionRow.created_at))
        ).one()
        analyzed, mean = session.execute(select(func.count(), func.avg(AnnotationRow.quality_score))).one()
    gaps = find_knowledge_gaps(store).gaps if analyzed else []
    return InteractionOverview(
        generated_at=utcnow(),
        store=_display_url(store.url),
        empty=not total,
        interactions=int(total),
        first_at=first,
        last_at=last,
        by_type=_group_counts(store, InteractionRow.interaction_type),
        by_status=_group_counts(store, InteractionRow.status),
        analyzed=int(analyzed),
        pending_analysis=len(pending_analysis(store)) if total else 0,
        by_category=_group_counts(store, AnnotationRow.category),
        by_tier=_group_counts(store, AnnotationRow.tier),
        mean_quality=round(float(mean), 4) if mean is not None else None,
        satisfaction=_satisfaction(store, settings.quality_gates.user_satisfaction_threshold),
        corrections=_corrections(store),
        gaps=[
            GapSummary(
                topic=g.topic,
                corrections=g.corrections,
                interactions=g.interactions,
                correction_rate=g.correction_rate,
                key_terms=g.key_terms,
            )
            for g in gaps
        ],
        datasets=_datasets(store, datasets),
    )


def _display_url(url: str) -> str:
    """The store's URL without a password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
