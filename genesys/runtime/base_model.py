"""The base model as a transformers model: what the transformers engine serves and LoRA trains on.

``load_base_model`` accepts a GGUF file (by default the embedded SmolLM2-135M-Instruct) or a Hugging
Face model directory. transformers dequantizes a GGUF when it loads it, which takes about 19 s for
SmolLM2, so the dequantized weights are cached once as safetensors under ``cache_dir`` and later loads
read the cache (well under a second). The cache holds exactly the weights llama.cpp serves, so an
adapter trained on them fits the embedded engine too.

Everything here reads local files only; nothing is fetched from the Hugging Face hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from genesys.errors import ConfigError, EngineUnavailable

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = structlog.get_logger(__name__)

# Part of the cache key: bump it when the way a cache is made changes, so stale copies are not reused.
_CACHE_FORMAT = 1
_SOURCE_RECORD = "genesys-source.json"
_DTYPES = ("auto", "float32", "float16", "bfloat16")
# What transformers raises for a file it cannot read as a model (missing `gguf`, bad header, ...).
_LOAD_ERRORS = (ImportError, OSError, ValueError, RuntimeError, KeyError, TypeError)


def resolve_device(device: str) -> str:
    """Turn ``"auto"`` into ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

    Raises ``EngineUnavailable`` when a CUDA device is asked for and torch sees none.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"device '{device}' was asked for but torch sees no CUDA GPU")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype for a settings value; ``"auto"`` is float32 on CPU, bf16 (or fp16) on a GPU.

    Raises ``ConfigError`` for a name that is not one of auto, float32, float16, bfloat16.
    """
    import torch

    if dtype not in _DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; use one of {', '.join(_DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # CPU kernels are fastest in float32, and the dequantized GGUF is float32 anyway.
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def gguf_cache_path(gguf: Path, cache_dir: Path) -> Path:
    """Where the safetensors copy of ``gguf`` lives: ``cache_dir/<stem>-<hash of name, size, mtime>``."""
    stat = gguf.stat()
    key = f"{_CACHE_FORMAT}|{gguf.name}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir / f"{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def load_base_model(
    path: Path | None,
    cache_dir: Path,
    *,
    device: str = "cpu",
    dtype: str = "auto",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode, on ``device``.

    ``path`` is a ``.gguf`` file (dequantized once and cached under ``cache_dir``), a Hugging Face
    model directory (one holding ``config.json``), or ``None`` for the embedded SmolLM2 GGUF.
    ``device`` may be ``"auto"``. Raises ``EngineUnavailable`` when the path is neither or cannot be
    loaded, ``ConfigError`` for an unknown ``dtype``.
    """
    from genesys.runtime.engines.llamacpp import embedded_model_path

    source = Path(path) if path is not None else embedded_model_path()
    if source.is_file() and source.suffix.lower() == ".gguf":
        model_dir = _cached_gguf_copy(source, Path(cache_dir))
    elif source.is_dir() and (source / "config.json").is_file():
        model_dir = source
    elif not source.exists():
        raise EngineUnavailable(f"model not found: {source}")
    else:
        raise EngineUnavailable(
            f"cannot load {source}: give a .gguf file or a Hugging Face model directory with config.json"
        )
    return _load_model_dir(model_dir, device=resolve_device(device), dtype=dtype)


def _load_model_dir(
    model_dir: Path, *, device: str, dtype: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, device)
    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, **_dtype_kwargs(torch_dtype)
        )
    except _LOAD_ERRORS as exc:
        raise EngineUnavailable(f"transformers could not load the model in {model_dir}: {exc}") from exc
    # transformers decorates PreTrainedModel.to with functools.wraps(Module.to), which mypy misreads.
    model.to(torch.device(device))  # type: ignore[arg-type]
    model.eval()
    log.info(
        "base_model.loaded",
        model_dir=str(model_dir),
        device=device,
        dtype=str(torch_dtype),
        seconds=round(time.perf_counter() - started, 2),
    )
    return model, tokenizer


def _dtype_kwargs(torch_dtype: torch.dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) >= Version("4.56"):
        return {"dtype": torch_dtype}
    return {"torch_dtype": torch_dtype}


def _cached_gguf_copy(gguf: Path, cache_dir: Path) -> Path:
    """The safetensors copy of ``gguf``, made now if missing. Raises ``EngineUnavailable``."""
    target = gguf_cache_path(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so a crash never leaves half a cache behind.
    staging = cache_dir / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    log.info("base_model.dequantizing", gguf=str(gguf), cache=str(target))
    try:
        _write_dequantized(gguf, staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished the same copy first; it holds the same weights.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("base_model.cached", cache=str(target), seconds=round(time.perf_counter() - started, 2))
    return target


def _write_dequantized(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model, tokenizer and config to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        dequantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True, **_dtype_kwargs(torch.float32)
        )
    except _LOAD_ERRORS as exc:
        raise EngineUnavailable(
            f"transformers could not read the GGUF {gguf} (it needs the `gguf` package): {exc}"
        ) from exc
    # A model loaded from a GGUF refuses save_pretrained; a fresh model built from the same config
    # takes its weights and saves normally.
    fresh = AutoModelForCausalLM.from_config(dequantized.config)
    fresh.load_state_dict(dequantized.state_dict())
    fresh.generation_config = dequantized.generation_config
    out_dir.mkdir(parents=True)
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    stat = gguf.stat()
    record = {"gguf": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    (out_dir / _SOURCE_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
