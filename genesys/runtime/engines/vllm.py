"""The production engine: a remote vLLM OpenAI-compatible server, reached over HTTP.

vLLM is started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; adapters are
loaded at run time with ``POST /v1/load_lora_adapter`` and chosen per request by the ``model`` field.
Token counts come from vLLM's ``POST /tokenize`` (at the server root, not under ``/v1``), which
renders messages with the same chat template as ``/v1/chat/completions``.

Adapter paths are read by the vLLM server, so they must exist on its filesystem (a shared volume when
Genesys and vLLM run on different machines). Several Genesys replicas may share one vLLM server:
adapters another replica loaded are picked up from ``/v1/models``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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

log = structlog.get_logger(__name__)


class VllmEngine(InferenceEngine):
    """Client of one vLLM server; the base model and its LoRA adapters are served there."""

    kind = "vllm"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        served_model: str | None = None,
        timeout_s: float = 120,
        n_ctx: int = 4096,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # vLLM serves /tokenize and /health at the root, the OpenAI routes under /v1.
        self.root_url = self.base_url.removesuffix("/v1")
        self.served_model = served_model
        self.n_ctx = n_ctx
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        )
        self._base_model: str | None = None
        self._adapters: dict[str, str] = {}  # name -> path as the server knows it
        self._adapters_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Ask the server which models it serves and pick the base model.

        Raises ``EngineUnavailable`` when the server cannot be reached, refuses, or does not serve
        ``served_model``.
        """
        try:
            cards = self._list_models()
        except EngineUnavailable:
            raise
        except EngineError as exc:
            raise EngineUnavailable(str(exc)) from exc
        bases = [card["id"] for card in cards if not card.get("parent")]
        if self.served_model is not None:
            if self.served_model not in bases:
                raise EngineUnavailable(
                    f"vLLM at {self.base_url} does not serve '{self.served_model}' "
                    f"(it serves: {', '.join(bases) or 'nothing'})"
                )
            base = self.served_model
        elif bases:
            base = bases[0]
        else:
            raise EngineUnavailable(f"vLLM at {self.base_url} serves no model")
        self._base_model = base
        self._sync_adapters(cards)
        log.info(
            "engine.loaded", engine=self.kind, url=self.base_url, model=base, adapters=len(self._adapters)
        )

    @property
    def ready(self) -> bool:
        return self._base_model is not None

    def info(self) -> EngineInfo:
        with self._adapters_lock:
            adapters = sorted(self._adapters)
        return EngineInfo(
            engine=self.kind,
            base_model=self._base_model or self.served_model or "",
            adapters=adapters,
            # vLLM's /v1/completions rejects `suffix`; FIM is done by continuing the prefix.
            supports_fim=False,
        )

    def load_adapter(self, name: str, path: Path) -> None:
        """Have vLLM load the peft adapter directory ``path`` (a path on the server) as ``name``.

        Loading a name again with the same path is accepted (another replica may have done it).
        Raises ``EngineError`` when the server refuses: runtime LoRA updating disabled, a name already
        loaded from another path, an adapter it cannot read.
        """
        base = self._require_base()
        # A relative path would be resolved against the vLLM server's working directory.
        lora_path = str(Path(path).absolute())
        response = self._send(
            "POST", f"{self.root_url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": lora_path}
        )
        self._check_runtime_lora(response)
        if response.status_code == 400 and "already been loaded" in _error_message(response):
            # Same name: fine when it is the same adapter (loaded by another replica), an error when not.
            cards = self._list_models()
            self._sync_adapters(cards)
            loaded_from = next((c.get("root") for c in cards if c["id"] == name and c.get("parent")), None)
            if loaded_from == lora_path:
                log.info("engine.adapter_already_loaded", engine=self.kind, adapter=name)
                return
            raise EngineError(
                f"vLLM already serves an adapter named '{name}' from {loaded_from}, not from {lora_path}"
            )
        _raise_for_status(response, f"load adapter '{name}'")
        with self._adapters_lock:
            self._adapters[name] = lora_path
        log.info("engine.adapter_loaded", engine=self.kind, adapter=name, path=lora_path, model=base)

    def unload_adapter(self, name: str) -> None:
        """Have vLLM drop adapter ``name``; one the server does not have is ignored.

        Raises ``EngineError`` when the server refuses for another reason.
        """
        response = self._send("POST", f"{self.root_url}/v1/unload_lora_adapter", {"lora_name": name})
        self._check_runtime_lora(response)
        # vLLM answers "The lora adapter '<name>' cannot be found." (404) for an adapter it lacks.
        if response.status_code in (400, 404) and "cannot be found" in _error_message(response):
            log.info("engine.adapter_not_loaded", engine=self.kind, adapter=name)
        else:
            _raise_for_status(response, f"unload adapter '{name}'")
        with self._adapters_lock:
            self._adapters.pop(name, None)

    def _check_runtime_lora(self, response: httpx.Response) -> None:
        # Without VLLM_ALLOW_RUNTIME_LORA_UPDATING the adapter routes do not exist: a bare FastAPI 404.
        if response.status_code == 404 and _error_type(response) is None:
            raise EngineError(
                f"vLLM at {self.root_url} does not allow loading adapters at run time; start it with "
                "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
            )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _list_models(self) -> list[dict[str, Any]]:
        response = self._send("GET", f"{self.base_url}/models")
        _raise_for_status(response, "list models")
        try:
            cards = response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(
                f"vLLM at {self.base_url} answered /models with {response.text[:200]!r}"
            ) from exc
        return [card for card in cards if isinstance(card, dict) and "id" in card]

    def _sync_adapters(self, cards: list[dict[str, Any]]) -> None:
        # vLLM lists LoRA adapters as models whose ``parent`` is the base model.
        found = {c["id"]: str(c.get("root") or "") for c in cards if c.get("parent") == self._base_model}
        with self._adapters_lock:
            self._adapters = found

    def _require_base(self) -> str:
        if self._base_model is None:
            raise EngineUnavailable("the engine is not loaded yet")
        return self._base_model

    def _model_for(self, adapter: str | None) -> str:
        """The ``model`` field for a request. Raises ``NotFound`` for an adapter vLLM does not serve."""
        base = self._require_base()
        if adapter is None:
            return base
        with self._adapters_lock:
            known = adapter in self._adapters
        if not known:
            # Another replica may have loaded it since.
            self._sync_adapters(self._list_models())
            with self._adapters_lock:
                known = adapter in self._adapters
        if not known:
            raise NotFound(f"adapter '{adapter}' is not loaded", param="model", code="model_not_found")
        return adapter

    # -- tokens -----------------------------------------------------------------------------------

    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        """Prompt tokens of ``messages`` with the chat template, from vLLM's ``/tokenize``."""
        body = {
            "model": self._require_base(),
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": True,
        }
        return self._tokenize(body)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without special tokens, from vLLM's ``/tokenize``."""
        return self._tokenize({"model": self._require_base(), "prompt": text, "add_special_tokens": False})

    def _tokenize(self, body: dict[str, Any]) -> int:
        response = self._send("POST", f"{self.root_url}/tokenize", body)
        _raise_for_status(response, "tokenize")
        try:
            return int(response.json()["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"vLLM answered /tokenize with {response.text[:200]!r}") from exc

    # -- generation -------------------------------------------------------------------------------

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> Iterator[EngineChunk]:
        """Stream the reply from ``/v1/chat/completions``; vLLM applies the model's chat template.

        Raises ``NotFound`` for an unknown adapter, ``EngineUnavailable`` when the server cannot be
        reached, ``EngineError`` when it fails.
        """
        body = {
            "model": self._model_for(adapter),
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            **_sampling(params, list(params.stop)),
        }
        yield from self._stream(f"{self.base_url}/chat/completions", body)

    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> Iterator[EngineChunk]:
        """Continue ``prompt`` with ``/v1/completions``.

        vLLM answers 400 "suffix is not currently supported" to a ``suffix``, so with one the prefix
        is continued and generation stops where the suffix's first line begins.
        """
        stop = suffix_stops(params, suffix)
        body = {"model": self._model_for(adapter), "prompt": prompt, **_sampling(params, stop)}
        yield from self._stream(f"{self.base_url}/completions", body)

    def _stream(self, url: str, body: dict[str, Any]) -> Iterator[EngineChunk]:
        finish: FinishReason = "stop"
        usage: dict[str, Any] = {}
        pieces = 0
        try:
            with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    if response.status_code == 404 and _error_type(response) == "NotFoundError":
                        raise NotFound(_error_message(response), param="model", code="model_not_found")
                    _raise_for_status(response, "generate")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    chunk = _parse_event(data)
                    for choice in chunk.get("choices") or []:
                        text = _choice_text(choice)
                        if text:
                            pieces += 1
                            yield EngineChunk(text=text)
                        if choice.get("finish_reason"):
                            finish = "length" if choice["finish_reason"] == "length" else "stop"
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        except httpx.TransportError as exc:
            raise _transport_error(url, exc) from exc
        yield EngineChunk(
            text="",
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            # Without a usage chunk (an old server), each streamed piece is one token.
            completion_tokens=int(usage.get("completion_tokens") or pieces),
        )

    def _send(self, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self._client.request(method, url, json=body)
        except httpx.TransportError as exc:
            raise _transport_error(url, exc) from exc


def _sampling(params: GenerationParams, stop: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if stop:
        body["stop"] = stop
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _choice_text(choice: dict[str, Any]) -> str:
    # Chat chunks carry ``delta.content``; completion chunks carry ``text``.
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("content") or "")
    return str(choice.get("text") or "")


def _parse_event(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise EngineError(f"vLLM sent a malformed stream event: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        raise EngineError(f"vLLM sent a malformed stream event: {data[:200]!r}")
    # vLLM reports a failure after the stream began as an event with an ``error`` object.
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise EngineError(f"vLLM failed while generating: {message}")
    return chunk


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    # Current vLLM nests the error ({"error": {...}}); before 0.9 it was flat ({"object": "error", ...}).
    error = body.get("error")
    return error if isinstance(error, dict) else body


def _error_type(response: httpx.Response) -> str | None:
    kind = _error_body(response).get("type")
    return str(kind) if kind else None


def _error_message(response: httpx.Response) -> str:
    body = _error_body(response)
    message = body.get("message") or body.get("detail")
    return str(message) if message else response.text[:500]


def _raise_for_status(response: httpx.Response, action: str) -> None:
    if response.is_success:
        return
    raise EngineError(f"vLLM could not {action}: HTTP {response.status_code}: {_error_message(response)}")


def _transport_error(url: str, exc: httpx.TransportError) -> EngineError:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return EngineUnavailable(f"vLLM at {url} cannot be reached: {exc}")
    return EngineError(f"vLLM at {url} failed mid-request: {type(exc).__name__}: {exc}")
