"""The ``genesys analyze`` report on a seeded store: counts by type, status, category and tier,
satisfaction, corrections, pending analysis, gaps and datasets; and on an empty store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genesys.runtime.settings import Settings
from genesys.runtime.store import DatasetVersion, Feedback, Store
from genesys.runtime.vectors import VectorStore
from genesys.tools.analysis import analyze_interactions
from genesys.tools.overview import interaction_overview, pending_analysis
from genesys.tools.tagging import CategoryIndex
from tests.tools.conftest import START, Record
from tests.tools.test_gaps import seed_vue_cluster

CORRECTION = "Use sorted(items, key=len) instead; list.sort returns None."


def seed(record: Record) -> dict[str, str]:
    """Eight interactions with known feedback; returns their ids by name."""
    ids = {
        "up": record(
            "Write a function that sorts a list", interaction_type="code", feedback=[{"thumbs": "up"}]
        ),
        "up2": record(
            "Write a function that reverses a string", interaction_type="code", feedback=[{"thumbs": "up"}]
        ),
        "rated5": record(
            "Explain what a closure is", interaction_type="explanation", feedback=[{"rating": 5}]
        ),
        "rated2": record(
            "Explain Python decorators", interaction_type="explanation", feedback=[{"rating": 2}]
        ),
        "corrected": record(
            "Why does my sort return None?",
            interaction_type="debug",
            feedback=[{"thumbs": "down", "correction": CORRECTION}],
        ),
        "implicit": record(
            "Fix this TypeError in my loop",
            interaction_type="debug",
            feedback=[
                {"source": "implicit", "signal": "correction", "thumbs": "down", "correction": CORRECTION},
            ],
        ),
        "continue": record(
            "hello there",
            interaction_type="chat",
            feedback=[{"source": "continue", "signal": "chatFeedback", "thumbs": "up"}],
        ),
        # Explicit up and a Continue thumbs down: /v1/feedback wins for satisfaction.
        "both": record(
            "how are you",
            interaction_type="chat",
            status="cancelled",
            feedback=[{"thumbs": "up"}, {"source": "continue", "signal": "chatFeedback", "thumbs": "down"}],
        ),
    }
    return {name: interaction.id for name, interaction in ids.items()}


def test_the_report_counts_a_seeded_store(
    store: Store, vectors: VectorStore, settings: Settings, record: Record, category_index: CategoryIndex
) -> None:
    ids = seed(record)
    record("no feedback on this one, please list files", interaction_type="code")
    assert len(pending_analysis(store)) == 9

    before = interaction_overview(store, settings)
    assert (before.analyzed, before.pending_analysis, before.by_tier) == (0, 9, {})

    analyze_interactions(store, vectors, settings, category_index=category_index)
    report = interaction_overview(store, settings)

    assert not report.empty and report.interactions == 9
    assert report.first_at == START and report.last_at == START + timedelta(seconds=8)
    assert report.by_type == {"code": 3, "debug": 2, "explanation": 2, "chat": 2}
    assert report.by_status == {"completed": 8, "cancelled": 1}
    assert (report.analyzed, report.pending_analysis) == (9, 0)
    assert sum(report.by_category.values()) == 9
    # premium: thumbs up x2, rating 5, Continue thumbs up; discarded: rating 2, two corrected, the
    # cancelled one (capped); standard: the unjudged one.
    assert report.by_tier == {"premium": 4, "discarded": 4, "standard": 1}
    assert report.mean_quality is not None and 0 < report.mean_quality < 1
    # Judged explicitly: up, up2, rated5, rated2, corrected, continue, both (explicit up wins).
    assert (report.satisfaction.judged, report.satisfaction.positive) == (7, 5)
    assert report.satisfaction.rate == pytest.approx(5 / 7, abs=1e-4)
    assert report.satisfaction.target == settings.quality_gates.user_satisfaction_threshold
    assert report.satisfaction.meets_target is False
    assert report.corrections.interactions == 2
    assert report.corrections.by_source == {"explicit": 1, "implicit": 1}
    assert report.gaps == [] and report.datasets == []

    # New feedback on an analysed interaction, and a new interaction: both wait for analysis.
    store.feedback.upsert(Feedback(interaction_id=ids["rated2"], rating=4))
    new = record("one more question about lists")
    assert pending_analysis(store) == [ids["rated2"], new.id]
    assert interaction_overview(store, settings).pending_analysis == 2


def test_the_report_lists_gaps_and_the_latest_datasets(
    store: Store, vectors: VectorStore, settings: Settings, record: Record, category_index: CategoryIndex
) -> None:
    seed_vue_cluster(record)
    analyze_interactions(store, vectors, settings, category_index=category_index)
    for number, kind in enumerate(("curated", "docs")):
        counts = {"splits": {"train": {"sft": 8 + number}, "validation": {"sft": 1}, "test": {"sft": 1}}}
        if kind == "docs":
            counts |= {"kind": "docs", "topic": "vue3"}
        store.datasets.add(
            DatasetVersion(
                version=f"ds-2026030{number + 1}-000000-0000000{number}",
                created_at=START + timedelta(days=number),
                config_hash="0" * 64,
                manifest_path=f"/data/training/train_set/{number}/manifest.json",
                counts=counts,
            )
        )

    report = interaction_overview(store, settings, datasets=5)

    assert [(g.topic, g.corrections, g.interactions) for g in report.gaps] == [("vue3", 5, 7)]
    assert "defineProps" in report.gaps[0].key_terms
    assert [(d.kind, d.topic, d.rows) for d in report.datasets] == [
        ("docs", "vue3", {"train": 9, "validation": 1, "test": 1}),
        ("curated", None, {"train": 8, "validation": 1, "test": 1}),
    ]
    assert len(interaction_overview(store, settings, datasets=1).datasets) == 1


def test_an_empty_store_gives_an_empty_report(store: Store, settings: Settings) -> None:
    report = interaction_overview(store, settings)
    assert report.empty and report.interactions == 0
    assert (report.by_type, report.by_category, report.by_tier) == ({}, {}, {})
    assert report.satisfaction.rate is None and report.satisfaction.meets_target is None
    assert report.corrections.interactions == 0 and report.gaps == [] and report.datasets == []
    assert report.first_at is None and report.mean_quality is None
    assert pending_analysis(store) == []
