"""Fixtures for the Analyst's tools: the real MiniLM (loaded once per session), a fresh SQLite store
and a fresh embedded Chroma per test, and a factory that records interactions and feedback."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from genesys.runtime.embeddings import Embedder, shared_embedder
from genesys.runtime.interaction_type import classify_interaction
from genesys.runtime.settings import DataCollection
from genesys.runtime.store import Feedback, Interaction, Store, new_interaction_id
from genesys.runtime.vectors import VectorStore
from genesys.tools.tagging import CategoryIndex

START = datetime(2026, 3, 1, tzinfo=UTC)
DEFAULT_ANSWER = "Here is one way to do it:\n\n```python\nresult = compute(items)\n```\n\nThat is all."

Record = Callable[..., Interaction]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The process-wide MiniLM, loaded once for every test that embeds."""
    shared = shared_embedder()
    shared.embed(["warm up"])
    return shared


@pytest.fixture(scope="session")
def category_index(embedder: Embedder) -> CategoryIndex:
    """The default categories, embedded once (tests of the Chroma cache build their own)."""
    return CategoryIndex.build(DataCollection().tag_categories, embedder)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'genesys.db'}")
    yield opened
    opened.close()


@pytest.fixture()
def vectors(tmp_path: Path, embedder: Embedder) -> VectorStore:
    return VectorStore(path=tmp_path / "chroma", embedder=embedder)


def make_interaction(
    question: str | list[dict[str, Any]],
    *,
    answer: str = DEFAULT_ANSWER,
    created_at: datetime = START,
    **fields: Any,
) -> Interaction:
    messages = [{"role": "user", "content": question}] if isinstance(question, str) else question
    last = next(str(m["content"]) for m in reversed(messages) if m["role"] == "user")
    values: dict[str, Any] = {
        "id": new_interaction_id("chat"),
        "conversation_id": f"conv-{new_interaction_id('chat')[-8:]}",
        "request_messages": messages,
        "answer": answer,
        "model_version": "base",
        "latency_ms": 100.0,
        "finish_reason": "stop",
        "interaction_type": classify_interaction(last),
        "created_at": created_at,
    }
    values.update(fields)
    return Interaction(**values)


@pytest.fixture()
def record(store: Store) -> Record:
    """``record(question, feedback=[{...}, ...], **interaction fields)``: store an interaction (one
    second after the previous one) and its feedback rows; returns the interaction."""
    clock = itertools.count()

    def _record(
        question: str | list[dict[str, Any]], *, feedback: list[dict[str, Any]] | None = None, **fields: Any
    ) -> Interaction:
        fields.setdefault("created_at", START + timedelta(seconds=next(clock)))
        interaction = make_interaction(question, **fields)
        store.interactions.record(interaction)
        for row in feedback or []:
            store.feedback.upsert(Feedback(interaction_id=interaction.id, **row))
        return interaction

    return _record
