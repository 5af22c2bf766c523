"""``analyze_interactions``: the Analyst's tool that tags and scores a batch of interactions.

For each interaction of the batch: its quality (``genesys.tools.quality``), its category, topics and
tags (``genesys.tools.tagging``), its vector in the Chroma ``interactions`` collection, and one
``Annotation`` row in the store. The whole batch is read with two queries, embedded with one call
(the texts Chroma does not hold yet), written to Chroma with one upsert (and one metadata update for
vectors it already holds) and to the store in one transaction.

Idempotent: re-analysing replaces the annotation and the Chroma metadata of each interaction, so
running it again after new feedback arrived simply brings the batch up to date. An interaction whose
embedded text is unchanged keeps the vector Chroma already holds: it is neither embedded again nor
re-inserted into Chroma's graph (which costs about 20 times a metadata update).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.embeddings import DIMENSION
from genesys.runtime.store import Annotation, Interaction, Store
from genesys.tools.quality import QualityAssessment, QualityBounds, assess_quality
from genesys.tools.tagging import (
    CategoryIndex,
    embedding_text,
    settle_near_ties,
    stored_embeddings,
    tag_interactions,
    write_vectors,
)

if TYPE_CHECKING:
    import numpy as np

    from genesys.runtime.settings import Settings
    from genesys.runtime.vectors import VectorStore

log = structlog.get_logger(__name__)

# Stored on every annotation, so that rows from an older analyser can be told apart and redone.
ANALYZER_VERSION = "analyst-1"
MAX_BATCH = 10_000


class AnalysisSummary(BaseModel):
    """What one analysis pass did: counts by category, tier and type, corrections, timings."""

    analyzed: int
    by_category: dict[str, int]
    by_tier: dict[str, int]
    by_type: dict[str, int]
    corrected: int = Field(description="Interactions with a usable correction (tag has_correction).")
    learning: int = Field(description="Interactions a user corrected or rejected (<topic>_learning).")
    confirmed: int = Field(description="Interactions a user approved (<topic>_confirmed).")
    top_topics: dict[str, int] = Field(description="The most frequent topics of the batch.")
    mean_score: float
    settled: int = Field(0, description="Near ties embedded again in float32 (inexact embedding backends).")
    analyzer_version: str = ANALYZER_VERSION
    seconds: float
    first_created_at: datetime | None = None
    last_created_at: datetime | None = None


def _select(store: Store, *, ids: list[str] | None, since: datetime | None, limit: int) -> list[Interaction]:
    if ids is not None:
        found = [store.interactions.get(i) for i in dict.fromkeys(ids)]
        return [i for i in found if i is not None][:limit]
    return store.interactions.list(since=since, limit=limit)


@dataclass(frozen=True)
class _Embeddings:
    matrix: np.ndarray
    stored: frozenset[int]  # rows whose vector Chroma already holds for the same text
    settled: int  # near ties embedded again in float32


def _embeddings(
    vectors: VectorStore, interactions: list[Interaction], texts: list[str], index: CategoryIndex
) -> _Embeddings:
    """One embedding call for the rows Chroma does not already hold with the same text, and with an
    inexact embedder one float32 call for the near ties among them (``settle_near_ties``).

    Not pipelined: embedding the next part of the batch on a background thread while this part was
    tagged and upserted into Chroma measured no faster on 2 cores (ONNX Runtime keeps both busy, and
    Chroma's upsert holds the GIL) and took up to 10% more CPU."""
    import numpy as np

    known = stored_embeddings(vectors, [i.id for i in interactions], texts)
    missing = [row for row in range(len(texts)) if row not in known]
    matrix = np.empty((len(texts), DIMENSION), dtype=np.float32)
    settled: list[int] = []
    if missing:
        matrix[missing] = vectors.embedder.embed([texts[row] for row in missing])
        types = [i.interaction_type for i in interactions]
        settled = settle_near_ties(index, vectors.embedder, matrix, texts, types, missing)
    for row, vector in known.items():
        matrix[row] = vector
    return _Embeddings(matrix, frozenset(known), len(settled))


def analyze_interactions(
    store: Store,
    vectors: VectorStore,
    settings: Settings,
    *,
    ids: list[str] | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    category_index: CategoryIndex | None = None,
) -> AnalysisSummary:
    """Tag and score a batch and store the results (Chroma vectors, annotation rows).

    The batch: the interactions named by ``ids`` (unknown ids are skipped), else the oldest ``limit``
    interactions created at or after ``since`` (all when ``since`` is None). ``category_index``: the
    embedded categories, when the caller already holds them (default: read from Chroma).

    Raises ``InvalidRequest`` for a ``limit`` outside 1..``MAX_BATCH``.
    """
    if not 1 <= limit <= MAX_BATCH:
        raise InvalidRequest(f"limit must be between 1 and {MAX_BATCH}, got {limit}", param="limit")
    started = time.perf_counter()
    interactions = _select(store, ids=ids, since=since, limit=limit)
    if not interactions:
        return _summary([], [], [], time.perf_counter() - started)
    bounds = QualityBounds.from_settings(settings)
    index = category_index or CategoryIndex.load(settings.data_collection.tag_categories, vectors)
    feedback = store.feedback.for_interactions([i.id for i in interactions])
    qualities = [assess_quality(i, feedback[i.id], bounds) for i in interactions]
    texts = [embedding_text(i) for i in interactions]
    embeddings = _embeddings(vectors, interactions, texts, index)
    tagged = tag_interactions(interactions, qualities, embeddings.matrix, texts, index)
    write_vectors(vectors, interactions, tagged, qualities, embeddings.matrix, unchanged=embeddings.stored)
    annotations = [
        Annotation(
            interaction_id=i.id,
            category=t.category,
            topics=t.topics,
            tags=t.tags,
            quality_score=q.score,
            tier=q.tier,
            reasons=q.reasons,
            analyzer_version=ANALYZER_VERSION,
        )
        for i, t, q in zip(interactions, tagged, qualities, strict=True)
    ]
    store.annotations.put_many(annotations)
    summary = _summary(interactions, annotations, qualities, time.perf_counter() - started)
    summary.settled = embeddings.settled
    log.info(
        "analysis.done",
        analyzed=summary.analyzed,
        by_tier=summary.by_tier,
        corrected=summary.corrected,
        settled=summary.settled,
        seconds=round(summary.seconds, 3),
    )
    return summary


def _summary(
    interactions: list[Interaction],
    annotations: list[Annotation],
    qualities: list[QualityAssessment],
    seconds: float,
) -> AnalysisSummary:
    topics = Counter(t for a in annotations for t in a.topics)
    return AnalysisSummary(
        analyzed=len(annotations),
        by_category=dict(Counter(a.category for a in annotations)),
        by_tier=dict(Counter(a.tier for a in annotations)),
        by_type=dict(Counter(i.interaction_type for i in interactions)),
        corrected=sum(q.has_correction for q in qualities),
        learning=sum(q.outcome == "learning" for q in qualities),
        confirmed=sum(q.outcome == "confirmed" for q in qualities),
        top_topics=dict(topics.most_common(10)),
        mean_score=round(sum(a.quality_score for a in annotations) / len(annotations), 4)
        if annotations
        else 0.0,
        seconds=seconds,
        first_created_at=interactions[0].created_at if interactions else None,
        last_created_at=interactions[-1].created_at if interactions else None,
    )
