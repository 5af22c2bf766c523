"""Knowledge gaps: topics on which users keep correcting Genesys (the seed's Vue 3 scenario).

Reads the annotations written by ``analyze_interactions``: every interaction tagged
``<topic>_learning`` (a user corrected or rejected the answer) counts as a correction of that topic.
A topic is a gap when it has at least ``min_corrections`` of them and they are at least
``min_correction_rate`` of its interactions (a topic as broad as ``python`` collects a few
corrections by chance; a gap is where answers fail often). For each gap the report gives examples
(prompt, wrong answer, correction), the terms the corrections use and the answers lack, and a focus
text for the Curator and the Trainer.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator

from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.interaction_log import last_user_text
from genesys.runtime.store import Annotation, Store
from genesys.tools.quality import CORRECTION_TAG, best_correction

LEARNING_SUFFIX = "_learning"
CONFIRMED_SUFFIX = "_confirmed"
EXAMPLE_CHARS = 300
MAX_KEY_TERMS = 6
# Key terms are read from this many corrected interactions of a gap, at most.
TERM_SAMPLE = 200
_PAGE = 2_000
# Code-like terms: inline code, calls, dotted names, camelCase, snake_case, <tags>, decorators.
_TERM = re.compile(
    r"`([^`\n]{2,40})`|(@?[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+(?:\(\))?)"
    r"|\b([a-z]+[A-Z][A-Za-z0-9]*|[a-z0-9]+_[a-z0-9_]+|[A-Za-z_]\w*\(\))|(<[a-z][\w-]*(?:\s+\w+)?>)"
)


class GapExample(BaseModel):
    interaction_id: str
    prompt: str
    answer: str
    correction: str | None = Field(None, description="The right answer, when a user gave one.")


class KnowledgeGap(BaseModel):
    """A topic Genesys answers badly, with the evidence."""

    topic: str
    corrections: int = Field(description="Interactions on the topic that users corrected or rejected.")
    with_correction_text: int = Field(description="Of those, how many carry the right answer.")
    interactions: int = Field(description="Analysed interactions on the topic.")
    confirmed: int = Field(description="Interactions on the topic that users approved.")
    correction_rate: float = Field(description="corrections / interactions.")
    categories: dict[str, int] = Field(description="Categories of the corrected interactions.")
    related_topics: list[str] = Field(description="Topics that co-occur in the corrected interactions.")
    key_terms: list[str] = Field(description="Terms the corrections use that the wrong answers lack.")
    examples: list[GapExample]
    suggested_focus: str


class GapReport(BaseModel):
    gaps: list[KnowledgeGap]
    analyzed_interactions: int
    corrected_interactions: int
    min_corrections: int
    min_correction_rate: float


def _annotations(store: Store) -> Iterator[Annotation]:
    offset = 0
    while True:
        page = store.annotations.list(limit=_PAGE, offset=offset)
        yield from page
        if len(page) < _PAGE:
            return
        offset += _PAGE


def _cut(text: str, limit: int = EXAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _terms(text: str) -> set[str]:
    # "defineProps()", `defineProps` and defineProps are one term.
    return {next(g for g in m.groups() if g).removesuffix("()") for m in _TERM.finditer(text[:20_000])}


def key_terms(corrections: list[str], answers: list[str], *, limit: int = MAX_KEY_TERMS) -> list[str]:
    """Code-like terms found in the corrections more often than in the wrong answers, commonest first."""
    in_corrections = Counter(t for text in corrections for t in _terms(text))
    in_answers = Counter(t for text in answers for t in _terms(text))
    minimum = 2 if len(corrections) >= 3 else 1
    scored = [
        (count - in_answers[term], count, term)
        for term, count in in_corrections.items()
        if count >= minimum and count > in_answers[term]
    ]
    return [term for _, _, term in sorted(scored, key=lambda s: (-s[0], -s[1], s[2]))[:limit]]


def _focus(gap: KnowledgeGap) -> str:
    category = max(gap.categories, key=lambda c: gap.categories[c]) if gap.categories else "general"
    terms = f" The corrections rely on {', '.join(gap.key_terms)}." if gap.key_terms else ""
    example = f' For example: "{_cut(gap.examples[0].prompt, 120)}".' if gap.examples else ""
    return (
        f"Genesys was corrected on {gap.topic} in {gap.corrections} of {gap.interactions} answers "
        f"({gap.correction_rate:.0%}), mostly {category} questions.{terms}{example} "
        f"Index {gap.topic} documentation, build a focused dataset from the {gap.with_correction_text} "
        f"corrections and the docs, train on it, and validate on paraphrases of these questions."
    )


def find_knowledge_gaps(
    store: Store,
    *,
    min_corrections: int = 3,
    min_correction_rate: float = 0.25,
    max_examples: int = 3,
    max_gaps: int = 20,
) -> GapReport:
    """Topics with at least ``min_corrections`` corrected answers making at least
    ``min_correction_rate`` of the topic's interactions, most corrected first.

    Needs annotations (``analyze_interactions``); interactions never analysed are not counted.
    Raises ``InvalidRequest`` for a ``min_corrections`` below 1 or a rate outside [0, 1].
    """
    if min_corrections < 1:
        raise InvalidRequest("min_corrections must be at least 1", param="min_corrections")
    if not 0 <= min_correction_rate <= 1:
        raise InvalidRequest("min_correction_rate must be between 0 and 1", param="min_correction_rate")
    total: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    corrected_on: dict[str, list[Annotation]] = defaultdict(list)
    analyzed = corrected = 0
    for annotation in _annotations(store):
        analyzed += 1
        tags = set(annotation.tags)
        learning = [t for t in annotation.topics if f"{t}{LEARNING_SUFFIX}" in tags]
        corrected += bool(learning)
        for topic in annotation.topics:
            total[topic] += 1
            confirmed[topic] += f"{topic}{CONFIRMED_SUFFIX}" in tags
        for topic in learning:
            corrected_on[topic].append(annotation)
    candidates = [
        topic
        for topic, items in corrected_on.items()
        if len(items) >= min_corrections and len(items) / total[topic] >= min_correction_rate
    ]
    candidates.sort(key=lambda t: (-len(corrected_on[t]), -len(corrected_on[t]) / total[t], t))
    gaps = [
        _gap(store, topic, corrected_on[topic], total[topic], confirmed[topic], max_examples)
        for topic in candidates[:max_gaps]
    ]
    return GapReport(
        gaps=gaps,
        analyzed_interactions=analyzed,
        corrected_interactions=corrected,
        min_corrections=min_corrections,
        min_correction_rate=min_correction_rate,
    )


def _gap(
    store: Store, topic: str, items: list[Annotation], interactions: int, confirmed: int, max_examples: int
) -> KnowledgeGap:
    ids = [a.interaction_id for a in items]
    feedback = store.feedback.for_interactions(ids)
    corrections = {i: best_correction(feedback[i]) for i in ids}
    texts = {i: c.correction for i, c in corrections.items() if c is not None and c.correction}
    # Examples with the right answer first: they show what Genesys should have said.
    ordered = sorted(items, key=lambda a: (CORRECTION_TAG not in a.tags, a.interaction_id not in texts))
    sampled = {a.interaction_id for a in ordered[:TERM_SAMPLE]}
    examples: list[GapExample] = []
    answers: list[str] = []
    for annotation in ordered[:TERM_SAMPLE]:
        interaction = store.interactions.get(annotation.interaction_id)
        if interaction is None:
            continue
        if annotation.interaction_id in texts:
            answers.append(interaction.answer)
        if len(examples) < max_examples:
            correction = texts.get(annotation.interaction_id)
            examples.append(
                GapExample(
                    interaction_id=interaction.id,
                    prompt=_cut(last_user_text(interaction.request_messages)),
                    answer=_cut(interaction.answer),
                    correction=_cut(correction, 2 * EXAMPLE_CHARS) if correction else None,
                )
            )
    related = Counter(t for a in items for t in a.topics if t != topic)
    gap = KnowledgeGap(
        topic=topic,
        corrections=len(items),
        with_correction_text=len(texts),
        interactions=interactions,
        confirmed=confirmed,
        correction_rate=round(len(items) / interactions, 4),
        categories=dict(Counter(a.category for a in items)),
        related_topics=[t for t, _ in related.most_common(5)],
        key_terms=key_terms([t for i, t in texts.items() if i in sampled], answers),
        examples=examples,
        suggested_focus="",
    )
    gap.suggested_focus = _focus(gap)
    return gap
