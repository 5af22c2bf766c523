"""The MiniLM embedder: unit vectors, and bfloat16 weights that stay within cosine 0.998 of float32."""

from __future__ import annotations

import numpy as np
import pytest

from genesys.runtime.embeddings import DIMENSION, Embedder, native_bf16, shared_embedder

TEXTS = [
    "How do I declare props in a Vue 3 component?",
    "My Docker container exits with code 137.",
    "Write pytest tests for a function that parses ISO dates.",
    "x",
    "",
]


def test_embeddings_are_float32_unit_vectors() -> None:
    vectors = shared_embedder().embed(TEXTS)
    assert vectors.shape == (len(TEXTS), DIMENSION) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert shared_embedder().embed([]).shape == (0, DIMENSION)


def test_bfloat16_embeddings_match_float32() -> None:
    bf16 = Embedder(dtype="bfloat16")
    assert bf16.uses_bf16
    low, full = bf16.embed(TEXTS), shared_embedder().embed(TEXTS)
    assert low.dtype == np.float32
    assert np.allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    assert float((low * full).sum(axis=1).min()) > 0.995


@pytest.mark.parametrize(("dtype", "expected"), [("float32", False), ("bfloat16", True)])
def test_dtype_choice(dtype: str, expected: bool) -> None:
    assert Embedder(dtype=dtype).uses_bf16 is expected  # type: ignore[arg-type]


def test_auto_follows_the_cpu() -> None:
    assert Embedder(dtype="auto").uses_bf16 is native_bf16()
    assert Embedder(dtype="auto", device="cuda").uses_bf16 is False
