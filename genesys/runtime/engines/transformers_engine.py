"""The transformers engine: the base model in PyTorch, with peft LoRA adapters chosen per request.

Serves the same weights as the llama.cpp engine (the GGUF dequantized by ``load_base_model``) or any
Hugging Face model directory, on CPU or a GPU. It is slower than llama.cpp on a CPU but runs peft
adapters as they come out of training, without a conversion to GGUF.

Generation is a plain token loop with a KV cache rather than ``model.generate``: it streams token by
token without a helper thread, cuts stop strings before they are emitted, and counts tokens exactly.
All adapters live in one ``PeftModel`` around the base model; a request picks one with
``set_adapter`` or runs the base with ``disable_adapter``. Because that switch changes the shared
model, one lock covers every generation and every adapter load or unload.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
from genesys.runtime.engines.llamacpp import embedded_model_path

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = structlog.get_logger(__name__)

# Fill-in-the-middle token triples (prefix, suffix, middle) of the common code-model families.
_FIM_TOKENS = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SantaCoder
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, CodeGemma
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),  # DeepSeek-Coder
)
_REPLACEMENT_CHAR = "\ufffd"


class TransformersEngine(InferenceEngine):
    """Serves a transformers causal LM and the peft LoRA adapters loaded into it."""

    kind = "transformers"

    def __init__(
        self,
        model_path: Path | None,
        *,
        cache_dir: Path,
        device: str = "auto",
        dtype: str = "auto",
        n_ctx: int = 4096,
        seed: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else embedded_model_path()
        if not self.model_path.exists():
            raise EngineUnavailable(f"model not found: {self.model_path}")
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.dtype = dtype
        self.n_ctx = n_ctx
        self.seed = seed
        self._base: PreTrainedModel | None = None
        self._peft: PeftModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._eos_ids: frozenset[int] = frozenset()
        self._fim_ids: tuple[int, int, int] | None = None
        self._cache_arg = "past_key_values"
        self._logits_arg: str | None = None
        self._adapters: dict[str, Path] = {}
        # Guards the model for a whole generation, and adapter loads and unloads (they change it).
        self._lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the base model and tokenizer. Raises ``EngineUnavailable`` or ``EngineError``."""
        from genesys.runtime.base_model import load_base_model, resolve_device

        with self._lock:
            if self._base is not None:
                return
            self.device = resolve_device(self.device)
            log.info("engine.loading", engine=self.kind, model=str(self.model_path), device=self.device)
            model, tokenizer = load_base_model(
                self.model_path, self.cache_dir, device=self.device, dtype=self.dtype
            )
            if not tokenizer.chat_template:
                raise EngineError(
                    f"the tokenizer of {self.model_path} has no chat template; use a chat model"
                )
            self._eos_ids = _eos_token_ids(model, tokenizer)
            self._fim_ids = _fim_token_ids(tokenizer)
            self._cache_arg, self._logits_arg = _forward_arg_names(model)
            self._tokenizer = tokenizer
            self._base = model
            log.info("engine.loaded", engine=self.kind, n_ctx=self.n_ctx, device=self.device)

    @property
    def ready(self) -> bool:
        return self._base is not None

    def info(self) -> EngineInfo:
        return EngineInfo(
            engine=self.kind,
            base_model=self.model_path.name,
            adapters=sorted(self._adapters),
            supports_fim=self._fim_ids is not None,
        )

    def load_adapter(self, name: str, path: Path) -> None:
        """Load the peft LoRA adapter directory ``path`` as ``name``, replacing one of that name.

        Raises ``EngineError`` when ``path`` holds no adapter or peft cannot load it onto this model,
        ``EngineUnavailable`` before ``load``.
        """
        path = Path(path)
        if not (path / "adapter_config.json").is_file():
            raise EngineError(f"no peft adapter at {path} (adapter_config.json is missing)")
        self._require_loaded()
        from peft import PeftModel

        with self._lock:
            if name in self._adapters:
                self._remove_adapter(name)
            # Read after the removal: dropping the last adapter unwraps the base model.
            base, _ = self._require_loaded()
            try:
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(
                        base, str(path), adapter_name=name, is_trainable=False
                    )
                else:
                    self._peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
            except _ADAPTER_ERRORS as exc:
                raise EngineError(f"peft could not load adapter '{name}' from {path}: {exc}") from exc
            self._peft.eval()
            self._adapters[name] = path
        log.info("engine.adapter_loaded", engine=self.kind, adapter=name, path=str(path))

    def unload_adapter(self, name: str) -> None:
        """Drop adapter ``name``; an adapter that is not loaded is ignored."""
        with self._lock:
            if name in self._adapters:
                self._remove_adapter(name)
                log.info("engine.adapter_unloaded", engine=self.kind, adapter=name)

    def _remove_adapter(self, name: str) -> None:
        """Remove ``name`` from the model; the caller holds the lock."""
        del self._adapters[name]
        if self._peft is None:
            return
        if self._adapters:
            self._peft.delete_adapter(name)
        else:
            # The last adapter: take the LoRA layers out altogether, so the base runs unwrapped again.
            self._base = self._peft.unload()
            self._peft = None

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        with self._lock:
            self._base = None
            self._peft = None
            self._adapters.clear()

    def _require_loaded(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._base is None or self._tokenizer is None:
            raise EngineUnavailable("the model is still loading")
        return self._base, self._tokenizer

    # -- tokens -----------------------------------------------------------------------------------

    def _chat_prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        _, tokenizer = self._require_loaded()
        # Rendered to text first: apply_chat_template(tokenize=True) returns a list in transformers 4
        # and a BatchEncoding in 5. The template carries its own special tokens.
        rendered = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        return list(tokenizer(str(rendered), add_special_tokens=False)["input_ids"])

    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self._chat_prompt_ids(messages))

    def count_tokens(self, text: str) -> int:
        _, tokenizer = self._require_loaded()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation -------------------------------------------------------------------------------

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> Iterator[EngineChunk]:
        """Stream the assistant's reply. Raises ``NotFound`` for an adapter that is not loaded."""
        self._check_adapter(adapter)
        yield from self._generate(self._chat_prompt_ids(messages), params, list(params.stop), adapter)

    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> Iterator[EngineChunk]:
        """Continue ``prompt``, or fill in between ``prompt`` and ``suffix``.

        With a suffix, a model with FIM tokens gets a prefix-suffix-middle prompt; any other model
        continues the prefix and stops where the suffix's first line begins. Raises ``NotFound`` for
        an adapter that is not loaded.
        """
        self._check_adapter(adapter)
        _, tokenizer = self._require_loaded()
        if suffix is not None and self._fim_ids is not None:
            fim_prefix, fim_suffix, fim_middle = self._fim_ids
            ids = [
                fim_prefix,
                *tokenizer(prompt, add_special_tokens=False)["input_ids"],
                fim_suffix,
                *tokenizer(suffix, add_special_tokens=False)["input_ids"],
                fim_middle,
            ]
            if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
                ids = [tokenizer.bos_token_id, *ids]
            yield from self._generate(ids, params, list(params.stop), adapter)
            return
        stop = suffix_stops(params, suffix)
        ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        yield from self._generate(ids, params, stop, adapter)

    def _check_adapter(self, adapter: str | None) -> None:
        self._require_loaded()
        if adapter is not None and adapter not in self._adapters:
            raise NotFound(f"adapter '{adapter}' is not loaded", param="model", code="model_not_found")

    @contextmanager
    def _model_for(self, adapter: str | None) -> Iterator[Any]:
        """The model with ``adapter`` active (``None``: the base); the caller holds the lock."""
        if self._peft is None:
            if adapter is not None:
                raise NotFound(f"adapter '{adapter}' is not loaded", param="model", code="model_not_found")
            yield self._base
            return
        if adapter is None:
            with self._peft.disable_adapter():
                yield self._peft
            return
        if adapter not in self._adapters:
            # Unloaded between the caller's check and taking the lock.
            raise NotFound(f"adapter '{adapter}' is not loaded", param="model", code="model_not_found")
        self._peft.set_adapter(adapter)
        yield self._peft

    def _generate(
        self, prompt_ids: list[int], params: GenerationParams, stop: list[str], adapter: str | None
    ) -> Iterator[EngineChunk]:
        import torch

        _, tokenizer = self._require_loaded()
        stop = [s for s in dict.fromkeys(stop) if s]
        max_tokens = max(1, min(params.max_tokens, self.n_ctx - len(prompt_ids)))
        generated: list[int] = []
        sampled = 0
        emitted = 0  # characters of the decoded completion already yielded
        finish: FinishReason = "length"
        with self._lock, self._model_for(adapter) as model:
            generator = self._sampling_generator(params.seed)
            input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
            cache: Any = None
            text = ""
            while sampled < max_tokens:
                step: dict[str, Any] = {"input_ids": input_ids, "use_cache": True, self._cache_arg: cache}
                if self._logits_arg is not None:
                    # Only the last position's logits are needed; this spares a vocabulary-wide
                    # projection of every prompt token.
                    step[self._logits_arg] = 1
                # Grad mode is per thread, and the caller may resume this generator from another
                # thread, so inference mode is entered for each step rather than across the yields.
                with torch.inference_mode():
                    output = model(**step)
                    cache = getattr(output, self._cache_arg)
                    token = _next_token(output.logits[0, -1], params, generator)
                sampled += 1
                if token in self._eos_ids:
                    finish = "stop"
                    break
                generated.append(token)
                text = str(
                    tokenizer.decode(generated, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                )
                cut = _find_stop(text, stop)
                if cut is not None:
                    if cut > emitted:
                        yield EngineChunk(text=text[emitted:cut])
                    emitted = len(text)
                    finish = "stop"
                    break
                safe = _safe_length(text, stop)
                if safe > emitted:
                    yield EngineChunk(text=text[emitted:safe])
                    emitted = safe
                input_ids = torch.tensor([[token]], dtype=torch.long, device=self.device)
            # What was held back (a possible stop-string start, a half character) is plain text now.
            if emitted < len(text):
                yield EngineChunk(text=text[emitted:])
        yield EngineChunk(
            text="", finish_reason=finish, prompt_tokens=len(prompt_ids), completion_tokens=sampled
        )

    def _sampling_generator(self, seed: int | None) -> torch.Generator:
        import torch

        generator = torch.Generator(device=self.device)
        chosen = seed if seed is not None else self.seed
        if chosen is None:
            generator.seed()
        else:
            generator.manual_seed(chosen)
        return generator


# What peft raises for an adapter that does not fit the model or cannot be read.
_ADAPTER_ERRORS = (ValueError, OSError, RuntimeError, KeyError, TypeError)


def _next_token(logits: torch.Tensor, params: GenerationParams, generator: torch.Generator) -> int:
    """Greedy at temperature 0, else temperature and nucleus (top-p) sampling."""
    import torch

    logits = logits.float()
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=generator))
    sorted_probs, order = torch.sort(probs, descending=True)
    # Keep the smallest head of the distribution whose mass reaches top_p; the top token always stays.
    keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < params.top_p
    choice = torch.multinomial(sorted_probs * keep, 1, generator=generator)
    return int(order[choice])


def _find_stop(text: str, stop: list[str]) -> int | None:
    """Where the earliest stop string starts in ``text``, or ``None``."""
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(found) if found else None


def _safe_length(text: str, stop: list[str]) -> int:
    """How much of ``text`` can be emitted now: not a tail that may grow into a stop string, nor a
    half-decoded character (the tokenizer shows it as U+FFFD until its last byte arrives)."""
    complete = text.rstrip(_REPLACEMENT_CHAR)
    held = 0
    for s in stop:
        # The longest proper prefix of ``s`` that ``complete`` ends with.
        for size in range(min(len(s) - 1, len(complete)), held, -1):
            if complete.endswith(s[:size]):
                held = size
                break
    return len(complete) - held


def _forward_arg_names(model: PreTrainedModel) -> tuple[str, str | None]:
    """The forward() argument for the KV cache (``cache`` since transformers 5.24, ``past_key_values``
    before) and the one that limits logits to the last positions, if the model has it."""
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    logits_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
    return cache_arg, logits_arg


def _eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _fim_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int] | None:
    """The (prefix, suffix, middle) token ids when the vocabulary has one of the known FIM triples."""
    vocab = tokenizer.get_vocab()
    for triple in _FIM_TOKENS:
        if all(token in vocab for token in triple):
            prefix, suffix, middle = (int(vocab[token]) for token in triple)
            return prefix, suffix, middle
    return None
