"""Inference engines behind one interface (``InferenceEngine``), chosen by ``model.engine``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genesys.runtime.engines.base import (
    ChatMessage,
    EngineChunk,
    EngineInfo,
    GenerationParams,
    InferenceEngine,
)

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

__all__ = [
    "ChatMessage",
    "EngineChunk",
    "EngineInfo",
    "GenerationParams",
    "InferenceEngine",
    "make_engine",
]


def make_engine(settings: Settings) -> InferenceEngine:
    """Build (not load) the engine named in ``settings.model.engine``; with
    ``training_pipeline.adapter_scope`` on, wrapped in a ``ScopedEngine`` that applies the adapters'
    scopes."""
    engine = _bare_engine(settings)
    if not settings.training_pipeline.adapter_scope:
        return engine
    from genesys.runtime.adapter_scope import ScopedEngine

    return ScopedEngine(engine)


def _bare_engine(settings: Settings) -> InferenceEngine:
    model = settings.model
    n_ctx = settings.data_collection.context_window + model.max_tokens
    if model.engine == "llamacpp":
        from genesys.runtime.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            model.path,
            n_ctx=n_ctx,
            n_threads=model.llamacpp.n_threads,
            n_batch=model.llamacpp.n_batch,
            max_loaded_models=model.llamacpp.max_loaded_models,
            seed=model.seed,
        )
    if model.engine == "transformers":
        from genesys.runtime.engines.transformers_engine import TransformersEngine

        return TransformersEngine(
            model.path,
            cache_dir=settings.data_dir / "cache" / "models",
            device=model.transformers.device,
            dtype=model.transformers.dtype,
            n_ctx=n_ctx,
            seed=model.seed,
        )
    from genesys.runtime.engines.vllm import VllmEngine

    return VllmEngine(
        model.vllm.base_url,
        api_key=model.vllm.api_key.get_secret_value() if model.vllm.api_key else None,
        served_model=model.vllm.served_model,
        timeout_s=model.vllm.timeout_s,
        n_ctx=n_ctx,
    )
