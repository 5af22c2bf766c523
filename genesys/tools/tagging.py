"""Semantic tags of interactions: category, topics, the seed's ``<topic>_learning`` / ``<topic>_confirmed``,
and their place in the Chroma ``interactions`` collection.

What is embedded. One short text per interaction, the *question*: the last user message (with the
one before it when it is a short follow-up such as "and in Vue 3?"), with each fenced code block
reduced to its first line, stack traces to their exception line, and the whole cut at
``EMBED_MAX_CHARS`` (240 characters, about 60 tokens). The question says what the interaction is
about; the answer is the part most likely to be wrong (that is why it may be corrected), so it must
not decide where the interaction lies. Cutting keeps the cost bounded and is the main lever on
throughput: MiniLM's cost grows with the tokens (up to its 256-token limit), and a pasted file or
traceback would cost ten short questions while adding little to the category; in a batch, one long
text also pads its neighbours. For completions and fill-in-the-middle the text is the code just
before the cursor. Topics are extracted from the whole question, not from this cut text.

Category. Each configured category (``data_collection.tag_categories``) has a description and a few
example questions; they are embedded once and kept in the Chroma ``categories`` collection, keyed by
a fingerprint of the texts (a changed description re-embeds). A category is the normalised mean
(centroid) of its texts' embeddings, and an interaction's category is the nearest centroid (cosine),
with a small bonus for the category that the lexical interaction type (debug -> debugging, ...)
names, which settles near ties. Centroids beat the nearest single example on a labelled set of 60
questions (95% against 68% right): single examples pull questions by the technology they mention.
A configured category without a description here is described by its own name.

Precision. Categories are float32 MiniLM's whatever the backend: the centroids are embedded in
float32 (``Embedder.embed_exact``), and with an inexact backend (``onnx-int8``, bfloat16) an
interaction whose two best categories lie within ``TIE_MARGIN`` of each other is embedded again in
float32 before it is classified and stored (``settle_near_ties``): int8 changed a category only where
the two best lay within 0.0100 of each other (see ``TIE_MARGIN``). Measured with ``genesys bench
ingest``, the stored categories of onnx-int8 then equal those of torch float32 on every interaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from genesys.errors import ConfigError
from genesys.runtime.chat_format import content_text
from genesys.runtime.embeddings import MODEL_NAME
from genesys.runtime.store import Interaction
from genesys.runtime.vectors import CATEGORIES, INTERACTIONS
from genesys.tools.quality import CORRECTION_TAG, QualityAssessment
from genesys.tools.topics import extract_topics

if TYPE_CHECKING:
    import numpy as np

    from genesys.runtime.embeddings import Embedder
    from genesys.runtime.vectors import VectorStore

log = structlog.get_logger(__name__)

EMBED_MAX_CHARS = 240
# A question shorter than this is a follow-up; the previous user message says what it is about.
FOLLOW_UP_CHARS = 48
CODE_LINE_CHARS = 80
# Condensing reads this much of a message: enough to reach the question after a long pasted file.
CONDENSE_WINDOW = 32_000
# Added to the similarity of the category that the lexical interaction type names.
TYPE_BONUS = 0.05
TYPE_CATEGORY = {"code": "coding", "debug": "debugging", "explanation": "explanation"}
# Near ties: the two best categories (bonus included) closer than this. Against float32, onnx-int8
# moved the category of 104 of 20,000 synthetic interactions, each of them with an int8 margin of at
# most 0.0100; about 4% of interactions fall within 0.012 and are embedded again.
TIE_MARGIN = 0.012

# Descriptions and examples avoid naming technologies: MiniLM weighs names heavily, and a category
# must not attract every question about the framework one of its examples happens to mention.
CATEGORY_TEXTS: dict[str, tuple[str, ...]] = {
    "coding": (
        "Writing code: implement a function, a class, a script, a query, an API endpoint or a UI component.",
        "Write a function that merges two sorted lists.",
        "Implement a REST endpoint that creates a user and returns it as JSON.",
        "Create a component that shows a table with a search box.",
        "Convert this callback-based code to async/await.",
        "How do I read a JSON file and print each field?",
        "Add a button that toggles the theme.",
    ),
    "debugging": (
        "Fixing bugs: errors, exceptions, stack traces, crashes, wrong output, code that does not work.",
        "I get TypeError: undefined is not a function, how do I fix it?",
        "My script crashes with a KeyError when it reads the config file.",
        "Traceback (most recent call last): ModuleNotFoundError: No module named 'app'",
        "The container exits immediately with code 137.",
        "Why does this function return None instead of the list?",
        "The value does not update on the page after I change it.",
    ),
    "explanation": (
        "Explaining concepts: what something is, how it works, why, the difference between two things.",
        "What is a closure in JavaScript?",
        "Explain how the Python GIL works.",
        "What is the difference between a process and a thread?",
        "How does the virtual DOM work?",
        "Why are strings immutable?",
    ),
    "architecture": (
        "Designing systems: how to structure an application, services, modules, data models and trade-offs.",
        "How should I structure a microservices backend for an online shop?",
        "Monolith or microservices for a small team?",
        "Which design pattern fits a plugin system?",
        "How do I design the database schema for a multi-tenant SaaS?",
        "Where should the business logic live in a layered web application?",
    ),
    "optimization": (
        "Making code faster or lighter: performance, memory use, slow queries, profiling, caching.",
        "This loop over a large dataset is slow, how can I vectorize it?",
        "How do I speed up this SQL query with several joins?",
        "Reduce the memory usage of my data pipeline.",
        "The page re-renders too often and feels sluggish.",
        "How can I make this algorithm faster than O(n^2)?",
    ),
    "testing": (
        "Testing code: unit tests, integration tests, mocks, fixtures, coverage, test frameworks.",
        "Write pytest tests for this function.",
        "How do I mock an HTTP call in my tests?",
        "How can I increase the test coverage of my module?",
        "How do I test an endpoint that uses a database?",
        "Write unit tests that check the component renders the right text.",
    ),
}

_FENCE = re.compile(r"```[^\n]*\n?(.*?)(?:```|\Z)", re.DOTALL)
# Stack frames say where, the exception line after them says what: keep only the latter.
_PY_FRAMES = re.compile(r"Traceback \(most recent call last\):[ \t]*\n(?:[ \t]+[^\n]*\n)*")
_JS_FRAMES = re.compile(r"^[ \t]+at [^\n]*\n?", re.MULTILINE)
_SPACE = re.compile(r"\s+")


class TaggedInteraction(BaseModel):
    """The semantic tags of one interaction."""

    interaction_id: str
    category: str
    category_similarity: float = Field(description="Cosine similarity to the chosen category.")
    topics: list[str]
    tags: list[str] = Field(description="Topics, <topic>_learning / <topic>_confirmed, has_correction.")
    text: str = Field(description="What was embedded (and stored in Chroma as metadata `question`).")


class SimilarInteraction(BaseModel):
    """A stored interaction close to a query: its id, similarity, embedded question and metadata."""

    interaction_id: str
    similarity: float
    question: str
    metadata: dict[str, Any]


# --- the text that stands for an interaction -----------------------------------------------------


def _condense(text: str) -> str:
    """Fenced code blocks reduced to their first line, stack frames dropped, whitespace collapsed."""

    def first_line(match: re.Match[str]) -> str:
        code = match.group(1).strip()
        return " " + code.split("\n", 1)[0][:CODE_LINE_CHARS] + " " if code else " "

    head = _JS_FRAMES.sub("", _PY_FRAMES.sub("", text[:CONDENSE_WINDOW]))  # bounded work on a huge message
    return _SPACE.sub(" ", _FENCE.sub(first_line, head)).strip()


def _cut(text: str, limit: int = EMBED_MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return cut[:space] if space > limit // 2 else cut


def _clean(text: str) -> str:
    """Text any store accepts: no NUL, no lone surrogates."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def question_text(interaction: Interaction) -> str:
    """The user's question (for completions: the code before the cursor), uncut."""
    messages = interaction.request_messages
    if interaction.endpoint != "chat":
        prompt = content_text(messages[0].get("content")) if messages else ""
        return prompt[-EMBED_MAX_CHARS * 4 :]  # the code nearest the cursor
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    if not users:
        return ""
    question = users[-1]
    if len(question.strip()) < FOLLOW_UP_CHARS and len(users) > 1:
        question = f"{users[-2][: EMBED_MAX_CHARS * 2]}\n{question}"
    return question


def embedding_text(interaction: Interaction) -> str:
    """The short text embedded for an interaction (see the module docstring)."""
    if interaction.endpoint != "chat":
        code = _SPACE.sub(" ", question_text(interaction)).strip()
        return _clean(code[-EMBED_MAX_CHARS:])
    return _clean(_cut(_condense(question_text(interaction))))


# --- categories ----------------------------------------------------------------------------------


def _category_texts(category: str) -> tuple[str, ...]:
    known = CATEGORY_TEXTS.get(category)
    if known:
        return known
    words = category.replace("_", " ").replace("-", " ")
    return (f"Questions about {words}.", words)


@dataclass(frozen=True)
class CategoryIndex:
    """The configured categories and their centroids (one unit vector per category)."""

    categories: tuple[str, ...]
    centroids: np.ndarray

    @classmethod
    def from_embeddings(
        cls, categories: Sequence[str], owners: Sequence[int], matrix: np.ndarray
    ) -> CategoryIndex:
        """Centroids of the texts' embeddings; ``owners[i]`` is the category of row ``i``."""
        import numpy as np

        owner = np.asarray(owners)
        centroids = np.stack([matrix[owner == c].mean(axis=0) for c in range(len(categories))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        return cls(tuple(categories), centroids.astype(np.float32))

    @classmethod
    def build(cls, categories: Sequence[str], embedder: Embedder) -> CategoryIndex:
        """Embed every category's texts now (no cache)."""
        texts, owners = _index_texts(categories)
        return cls.from_embeddings(categories, owners, embedder.embed_exact(texts))

    @classmethod
    def load(cls, categories: Sequence[str], vectors: VectorStore) -> CategoryIndex:
        """From the Chroma ``categories`` collection, embedding (and storing) the texts on first use.

        Raises ``ConfigError`` when ``categories`` is empty.
        """
        import numpy as np

        if not categories:
            raise ConfigError("data_collection.tag_categories is empty: nothing to tag with")
        texts, owners = _index_texts(categories)
        fingerprint = hashlib.sha256(json.dumps([MODEL_NAME, texts, owners]).encode()).hexdigest()[:16]
        ids = [f"{fingerprint}:{i}" for i in range(len(texts))]
        collection = vectors.collection(CATEGORIES)
        stored = collection.get(ids=ids, include=["embeddings"])
        if len(stored["ids"]) == len(ids):
            by_id = dict(zip(stored["ids"], stored["embeddings"], strict=True))
            matrix = np.asarray([by_id[i] for i in ids], dtype=np.float32)
        else:
            matrix = vectors.embedder.embed_exact(texts)
            collection.upsert(
                ids=ids,
                embeddings=matrix,
                documents=texts,
                metadatas=[{"category": categories[o], "fingerprint": fingerprint} for o in owners],
            )
            log.info("categories.embedded", categories=list(categories), texts=len(texts))
        return cls.from_embeddings(categories, owners, matrix)

    def classify(self, embeddings: np.ndarray, types: Sequence[str]) -> list[tuple[str, float]]:
        """(category, cosine similarity) for each row of ``embeddings`` (unit vectors), given its type."""
        similarities = embeddings @ self.centroids.T
        best = self._scored(similarities, types).argmax(axis=1)
        return [(self.categories[c], round(float(similarities[row, c]), 4)) for row, c in enumerate(best)]

    def near_ties(self, embeddings: np.ndarray, types: Sequence[str]) -> list[int]:
        """The rows whose two best categories (type bonus included) lie within ``TIE_MARGIN``."""
        import numpy as np

        if len(self.categories) < 2 or not len(embeddings):
            return []
        scored = self._scored(embeddings @ self.centroids.T, types)
        top_two = np.partition(scored, -2, axis=1)[:, -2:]
        return [int(row) for row in np.flatnonzero(np.abs(top_two[:, 1] - top_two[:, 0]) < TIE_MARGIN)]

    def _scored(self, similarities: np.ndarray, types: Sequence[str]) -> np.ndarray:
        """The similarities plus ``TYPE_BONUS`` for the category each row's interaction type names."""
        scored = similarities.copy()
        for row, kind in enumerate(types):
            favoured = TYPE_CATEGORY.get(kind)
            if favoured in self.categories:
                scored[row, self.categories.index(favoured)] += TYPE_BONUS
        return scored


def _index_texts(categories: Sequence[str]) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    owners: list[int] = []
    for index, category in enumerate(categories):
        for text in _category_texts(category):
            texts.append(text)
            owners.append(index)
    return texts, owners


def settle_near_ties(
    index: CategoryIndex,
    embedder: Embedder,
    embeddings: np.ndarray,
    texts: Sequence[str],
    types: Sequence[str],
    rows: Sequence[int] | None = None,
) -> list[int]:
    """With an inexact embedder, embed again in float32 the near ties (``CategoryIndex.near_ties``)
    among ``rows`` (default: all) and write those vectors into ``embeddings`` in place, so that they
    are classified and stored as float32 MiniLM would. Returns the rows replaced; none with an exact
    embedder. ``texts`` and ``types`` hold one entry per row of ``embeddings``."""
    candidates = list(range(len(texts))) if rows is None else list(rows)
    if not candidates or embedder.exact:
        return []
    ties = index.near_ties(embeddings[candidates], [types[r] for r in candidates])
    settled = [candidates[i] for i in ties]
    if settled:
        embeddings[settled] = embedder.embed_exact([texts[r] for r in settled])
    return settled


# --- tags ----------------------------------------------------------------------------------------


def interaction_tags(topics: Sequence[str], quality: QualityAssessment) -> list[str]:
    """The seed's tags: each topic, ``<topic>_learning`` when a user corrected or rejected the answer,
    ``<topic>_confirmed`` when one approved it; ``has_correction`` when a correction can be trained on."""
    tags = list(topics)
    if quality.outcome == "learning":
        tags.extend(f"{topic}_learning" for topic in topics)
    elif quality.outcome == "confirmed":
        tags.extend(f"{topic}_confirmed" for topic in topics)
    if quality.has_correction:
        tags.append(CORRECTION_TAG)
    return tags


def tag_interactions(
    interactions: Sequence[Interaction],
    qualities: Sequence[QualityAssessment],
    embeddings: np.ndarray,
    texts: Sequence[str],
    index: CategoryIndex,
) -> list[TaggedInteraction]:
    """Category, topics and tags of each interaction, from its embedding (one row each) and quality."""
    categories = index.classify(embeddings, [i.interaction_type for i in interactions])
    tagged = []
    for interaction, quality, text, (category, similarity) in zip(
        interactions, qualities, texts, categories, strict=True
    ):
        topics = extract_topics(question_text(interaction))
        tagged.append(
            TaggedInteraction(
                interaction_id=interaction.id,
                category=category,
                category_similarity=similarity,
                topics=topics,
                tags=interaction_tags(topics, quality),
                text=text,
            )
        )
    return tagged


# --- the Chroma "interactions" collection --------------------------------------------------------
#
# Each interaction is one record: id = interaction id, its embedding, and metadata for filtered
# search. The embedded text is kept as the metadata value ``question``, not as a Chroma document:
# Chroma full-text indexes documents (SQLite FTS5), which costs twice what storing the vector does
# (about 0.3 ms against 0.15 ms an interaction on 2 cores), and nothing searches interaction text
# in Chroma (the store holds the full text). For the same reason the metadata holds only what
# searches filter on: each small key adds about 0.03 ms.
QUESTION_KEY = "question"


def chroma_metadata(tagged: TaggedInteraction, quality: QualityAssessment) -> dict[str, Any]:
    """What Chroma keeps beside each vector: the embedded text and the fields searches filter on
    (``where={"topics": {"$contains": "vue3"}}``, ``{"has_correction": True}``, ``{"tier": ...}``).
    Everything else (type, score, reasons, conversation) is one lookup away in the store, by id."""
    metadata: dict[str, Any] = {
        QUESTION_KEY: tagged.text,
        "category": tagged.category,
        "tier": quality.tier,
        "has_correction": quality.has_correction,
    }
    if tagged.topics:  # Chroma refuses empty lists
        metadata["topics"] = tagged.topics
    return metadata


def stored_embeddings(
    vectors: VectorStore, ids: Sequence[str], texts: Sequence[str]
) -> dict[int, np.ndarray]:
    """Row index -> the embedding Chroma already holds for that interaction, where it was made from
    the text that would be embedded now (a re-analysis need not embed again)."""
    import numpy as np

    found = vectors.collection(INTERACTIONS).get(ids=list(ids), include=["metadatas", "embeddings"])
    if not found["ids"]:
        return {}
    row_of = {id_: row for row, id_ in enumerate(ids)}
    return {
        row_of[id_]: np.asarray(vector, dtype=np.float32)
        for id_, metadata, vector in zip(found["ids"], found["metadatas"], found["embeddings"], strict=True)
        if metadata and metadata.get(QUESTION_KEY) == texts[row_of[id_]]
    }


def write_vectors(
    vectors: VectorStore,
    interactions: Sequence[Interaction],
    tagged: Sequence[TaggedInteraction],
    qualities: Sequence[QualityAssessment],
    embeddings: np.ndarray,
    *,
    unchanged: Collection[int] = (),
) -> None:
    """Store each interaction in the ``interactions`` collection (id = interaction id) with the
    embeddings already computed (Chroma does not embed again). Rows in ``unchanged`` are already
    stored with the same text and vector: only their metadata is updated, because upserting an
    existing vector makes Chroma rebuild its graph entry (about 20 times the cost of an update)."""
    collection = vectors.collection(INTERACTIONS)
    step = max(1, int(vectors.client.get_max_batch_size()))
    keep = set(unchanged)
    fresh = [row for row in range(len(interactions)) if row not in keep]
    for start in range(0, len(fresh), step):
        rows = fresh[start : start + step]
        collection.upsert(
            ids=[interactions[r].id for r in rows],
            embeddings=embeddings[rows],
            metadatas=[chroma_metadata(tagged[r], qualities[r]) for r in rows],
        )
    known = sorted(keep)
    for start in range(0, len(known), step):
        rows = known[start : start + step]
        collection.update(
            ids=[interactions[r].id for r in rows],
            metadatas=[chroma_metadata(tagged[r], qualities[r]) for r in rows],
        )


def similar_interactions(
    vectors: VectorStore, text: str, *, n: int = 5, where: dict[str, Any] | None = None
) -> list[SimilarInteraction]:
    """The stored interactions whose questions are closest to ``text`` (cosine similarity, best first)."""
    query = vectors.embedder.embed([_clean(_cut(_condense(text)))])
    found = vectors.collection(INTERACTIONS).query(
        query_embeddings=query, n_results=n, where=where, include=["metadatas", "distances"]
    )
    out = []
    for id_, metadata, distance in zip(
        found["ids"][0], found["metadatas"][0], found["distances"][0], strict=True
    ):
        fields = dict(metadata or {})
        out.append(
            SimilarInteraction(
                interaction_id=id_,
                similarity=round(1.0 - float(distance), 4),
                question=str(fields.pop(QUESTION_KEY, "")),
                metadata=fields,
            )
        )
    return out
