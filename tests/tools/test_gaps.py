"""Knowledge gaps: a cluster of corrections on one topic is a gap (the seed's Vue 3 scenario); a few
scattered corrections are not."""

from __future__ import annotations

import pytest

from genesys.errors import InvalidRequest
from genesys.runtime.settings import Settings
from genesys.runtime.store import Store
from genesys.runtime.vectors import VectorStore
from genesys.tools.analysis import analyze_interactions
from genesys.tools.gaps import find_knowledge_gaps, key_terms
from genesys.tools.tagging import CategoryIndex
from tests.tools.conftest import Record

VUE_QUESTIONS = (
    "How do I declare props in a Vue 3 component?",
    "How do I emit an event from a child component in Vue 3?",
    "How do I make a reactive counter in Vue.js 3?",
    "How do I watch a prop for changes in vue3?",
    "How do I access the router inside setup in Vue 3?",
)
VUE_CORRECTIONS = (
    "In Vue 3 use <script setup> and defineProps({ title: String }); this.props does not exist.",
    "With <script setup>, declare defineEmits(['save']) and call emit('save'); $emit is for templates.",
    "Use ref(0) inside <script setup> and change count.value; data() is the Options API.",
    "Call watch(() => props.value, handler) inside <script setup> after defineProps.",
    "In <script setup> call useRouter() from vue-router; there is no this.$router there.",
)
WRONG_ANSWER = "Use this.props in the data() function: `data() { return { title: this.props.title } }`."
SCATTERED = (
    ("How do I read an Excel file with pandas?", "Use pandas.read_excel('file.xlsx', sheet_name=0)."),
    ("How do I expose a port in Docker?", "Add EXPOSE 8000 to the Dockerfile and run with -p 8000:8000."),
    ("How do I memoize a value in React?", "Wrap the computation in useMemo(() => compute(a), [a])."),
    (
        "How do I declare a path parameter in FastAPI?",
        "Declare it in the route: @app.get('/items/{item_id}').",
    ),
)


def seed_vue_cluster(record: Record) -> None:
    for question, correction in zip(VUE_QUESTIONS, VUE_CORRECTIONS, strict=True):
        record(question, answer=WRONG_ANSWER, feedback=[{"thumbs": "down", "correction": correction}])
    record("How do I render a list with v-for in Vue 3?", feedback=[{"thumbs": "up"}])
    record("What is a computed property in Vue 3?")


def seed_scattered(record: Record) -> None:
    for question, correction in SCATTERED:
        record(question, feedback=[{"thumbs": "down", "correction": correction}])
        record(question.replace("How do I", "Can I"))


def test_a_cluster_of_corrections_on_one_topic_is_a_gap(
    store: Store, vectors: VectorStore, settings: Settings, record: Record, category_index: CategoryIndex
) -> None:
    seed_vue_cluster(record)
    seed_scattered(record)
    analyze_interactions(store, vectors, settings, category_index=category_index)

    report = find_knowledge_gaps(store, min_corrections=3)

    assert [gap.topic for gap in report.gaps] == ["vue3"]
    gap = report.gaps[0]
    assert (gap.corrections, gap.with_correction_text, gap.interactions, gap.confirmed) == (5, 5, 7, 1)
    assert gap.correction_rate == pytest.approx(5 / 7, abs=1e-4)
    assert report.analyzed_interactions == 7 + 2 * len(SCATTERED)
    assert report.corrected_interactions == 5 + len(SCATTERED)
    assert len(gap.examples) == 3
    for example in gap.examples:
        assert example.prompt in VUE_QUESTIONS and example.answer == WRONG_ANSWER
        assert example.correction in VUE_CORRECTIONS
    # What the corrections say and the wrong answers do not.
    assert "<script setup>" in gap.key_terms and "defineProps" in gap.key_terms
    assert "data" not in gap.key_terms
    assert sum(gap.categories.values()) == 5
    assert "vue3" in gap.suggested_focus and "5 of 7" in gap.suggested_focus
    assert "<script setup>" in gap.suggested_focus


def test_scattered_corrections_are_no_gap(
    store: Store, vectors: VectorStore, settings: Settings, record: Record, category_index: CategoryIndex
) -> None:
    seed_scattered(record)
    analyze_interactions(store, vectors, settings, category_index=category_index)

    report = find_knowledge_gaps(store, min_corrections=3)

    assert report.gaps == []
    assert report.corrected_interactions == len(SCATTERED)
    # With a threshold of one correction, each scattered topic is a (small) gap.
    loose = find_knowledge_gaps(store, min_corrections=1)
    assert {"pandas", "docker", "react", "fastapi"} <= {gap.topic for gap in loose.gaps}


def test_a_broad_topic_needs_a_high_enough_correction_rate(
    store: Store, vectors: VectorStore, settings: Settings, record: Record, category_index: CategoryIndex
) -> None:
    for n in range(3):
        record(
            f"How do I parse dates in Python, case {n}?",
            feedback=[{"thumbs": "down", "correction": "Use datetime.fromisoformat(text)."}],
        )
    for n in range(12):
        record(f"How do I reverse a list in Python, case {n}?")
    analyze_interactions(store, vectors, settings, category_index=category_index)

    assert find_knowledge_gaps(store, min_corrections=3).gaps == []  # 3 of 15: 20% < 25%
    gaps = find_knowledge_gaps(store, min_corrections=3, min_correction_rate=0.2).gaps
    assert [(g.topic, g.corrections, g.interactions) for g in gaps] == [("python", 3, 15)]


def test_no_annotations_no_gaps_and_bad_parameters(store: Store) -> None:
    report = find_knowledge_gaps(store)
    assert (report.gaps, report.analyzed_interactions) == ([], 0)
    with pytest.raises(InvalidRequest, match="min_corrections"):
        find_knowledge_gaps(store, min_corrections=0)
    with pytest.raises(InvalidRequest, match="min_correction_rate"):
        find_knowledge_gaps(store, min_correction_rate=1.5)


def test_key_terms_are_what_corrections_add() -> None:
    corrections = [
        "Use `defineProps()` in <script setup>.",
        "defineProps() and <script setup> replace the props option.",
        "Call defineProps inside <script setup>.",
    ]
    answers = ["Use this.props in data().", "Declare props: ['title'] in the component options."]
    assert key_terms(corrections, answers) == ["<script setup>", "defineProps"]
    assert key_terms([], answers) == []
