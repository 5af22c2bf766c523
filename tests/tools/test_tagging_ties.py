"""Near ties of the category decision, settled in float32 for inexact embedders (no model: the
embedder and the centroids are small hand-made vectors, so every margin is known)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from genesys.runtime.embeddings import Embedder
from genesys.tools.tagging import TIE_MARGIN, TYPE_BONUS, CategoryIndex, settle_near_ties

CATEGORIES = ("coding", "debugging", "explanation")


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


INDEX = CategoryIndex(CATEGORIES, np.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)]))


class FakeEmbedder(Embedder):
    """``embed_exact`` returns the vectors it was given for each text; records what it embedded."""

    def __init__(self, exact_vectors: dict[str, np.ndarray], *, exact: bool) -> None:
        super().__init__()
        self.exact_vectors = exact_vectors
        self.is_exact = exact
        self.asked: list[list[str]] = []

    @property
    def exact(self) -> bool:
        return self.is_exact

    def embed_exact(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.append(list(texts))
        return np.stack([self.exact_vectors[t] for t in texts])


def _similar(coding: float, debugging: float) -> np.ndarray:
    """A unit vector with these similarities to coding and debugging (the rest to explanation)."""
    return np.asarray([coding, debugging, np.sqrt(1 - coding**2 - debugging**2)], dtype=np.float32)


def _rows() -> tuple[np.ndarray, list[str], list[str]]:
    vectors = np.stack(
        [
            _similar(0.9, 0.2),  # clear: coding
            _similar(0.7, 0.7 - TIE_MARGIN / 2),  # near tie between coding and debugging
            _similar(0.3, 0.3),  # clear: explanation
            _similar(0.65, 0.65 + 2 * TIE_MARGIN),  # debugging, outside the margin
            _similar(0.7, 0.7),  # a tie that the type bonus (debug -> debugging) breaks
            _similar(0.68, 0.68 + TYPE_BONUS),  # debugging ahead, but the bonus (code) levels it
        ]
    )
    texts = [f"text {i}" for i in range(len(vectors))]
    types = ["chat", "chat", "chat", "chat", "debug", "code"]
    return vectors, texts, types


def test_near_ties_are_the_rows_whose_two_best_categories_are_within_the_margin() -> None:
    vectors, _, types = _rows()
    assert INDEX.near_ties(vectors, types) == [1, 5]
    assert INDEX.near_ties(vectors[:0], []) == []
    single = CategoryIndex(("coding",), INDEX.centroids[:1])
    assert single.near_ties(vectors, types) == []


def test_settling_replaces_only_the_near_ties_with_float32_vectors() -> None:
    vectors, texts, types = _rows()
    exact = {text: _unit(0, 1, 0.1 * i) for i, text in enumerate(texts)}  # all clearly debugging
    embedder = FakeEmbedder(exact, exact=False)
    before = vectors.copy()

    settled = settle_near_ties(INDEX, embedder, vectors, texts, types)

    assert settled == [1, 5] and embedder.asked == [["text 1", "text 5"]]
    assert np.array_equal(vectors[[0, 2, 3, 4]], before[[0, 2, 3, 4]])
    assert np.array_equal(vectors[[1, 5]], np.stack([exact["text 1"], exact["text 5"]]))
    # The replaced rows are classified from the float32 vectors.
    assert [c for c, _ in INDEX.classify(vectors[[1, 5]], [types[1], types[5]])] == ["debugging"] * 2


@pytest.mark.parametrize("rows", [[0, 2, 3], []])
def test_settling_looks_only_at_the_given_rows(rows: list[int]) -> None:
    vectors, texts, types = _rows()
    embedder = FakeEmbedder({}, exact=False)
    assert settle_near_ties(INDEX, embedder, vectors, texts, types, rows) == []
    assert embedder.asked == []


def test_an_exact_embedder_settles_nothing() -> None:
    vectors, texts, types = _rows()
    embedder = FakeEmbedder({}, exact=True)
    before = vectors.copy()
    assert settle_near_ties(INDEX, embedder, vectors, texts, types) == []
    assert embedder.asked == [] and np.array_equal(vectors, before)
