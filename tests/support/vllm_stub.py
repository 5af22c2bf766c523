"""A stand-in for vLLM's OpenAI-compatible server, for tests that cannot run vLLM (it needs a GPU).

It follows vLLM's routes and bodies: ``GET /v1/models`` (LoRA adapters listed with ``root`` and
``parent``), ``POST /v1/chat/completions`` and ``/v1/completions`` (streamed or not; with
``stream_options.include_usage`` a last chunk with empty ``choices`` and the usage),
``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (present only when runtime LoRA
updating is allowed, as with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``), ``POST /tokenize`` and
``GET /health`` at the root. Errors have vLLM's shape, ``{"error": {"message", "type", "param",
"code"}}`` with ``code`` the HTTP status, and its status codes: 400 for a duplicate adapter load, a
``suffix`` or an invalid body, 404 for an unknown model or an unknown adapter to unload.

Generation is deterministic and names the model that answered, so a test can tell which adapter
served a request: a chat reply is ``"<model> says: <last user message>"`` and a completion is
``"[<model>] <prompt>"``, one token per word (with its leading spaces), cut by ``max_tokens`` and
``stop`` strings the way vLLM cuts them.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

_BOS_ID = 1
_VOCAB = 49152


class _Body(BaseModel):
    # vLLM accepts and ignores unknown fields.
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Body):
    include_usage: bool | None = True


class ChatRequest(_Body):
    model: str | None = None
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class CompletionRequest(_Body):
    model: str | None = None
    prompt: str
    suffix: str | None = None
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class LoadLoRAAdapterRequest(_Body):
    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(_Body):
    lora_name: str


class TokenizeRequest(_Body):
    model: str | None = None
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool | None = None


def tokenize_text(text: str) -> list[str]:
    """The stub's tokens: each word with the whitespace before it."""
    return re.findall(r"\s*\S+|\s+$", text)


def token_id(piece: str) -> int:
    return 2 + zlib.crc32(piece.encode("utf-8")) % (_VOCAB - 2)


def render_chat(messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
    """The stub's chat template (ChatML, as SmolLM2 uses)."""
    rendered = "".join(f"<|im_start|>{m.get('role')}\n{m.get('content')}<|im_end|>\n" for m in messages)
    return rendered + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def _error(message: str, err_type: str, status: int, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": err_type, "param": param, "code": status}}
    return JSONResponse(body, status_code=status)


def _cut(text: str, max_tokens: int | None, stop: list[str]) -> tuple[list[str], str, str | None, int]:
    """The pieces to stream, the finish reason, the stop string hit and the tokens generated."""
    tokens = tokenize_text(text)
    limit = len(tokens) if max_tokens is None else min(max_tokens, len(tokens))
    produced = ""
    for count, token in enumerate(tokens[:limit], start=1):
        produced += token
        hits = [(produced.find(s), s) for s in stop if s and s in produced]
        if hits:
            at, matched = min(hits)
            # vLLM drops the stop string and what follows it, and never streams a part of it.
            return _split(produced[:at], tokens), "stop", matched, count
    finish = "length" if limit < len(tokens) else "stop"
    return tokens[:limit], finish, None, limit


def _split(text: str, tokens: list[str]) -> list[str]:
    """``text`` cut at the token boundaries."""
    pieces: list[str] = []
    position = 0
    for token in tokens:
        if position >= len(text):
            break
        pieces.append(text[position : position + len(token)])
        position += len(token)
    return pieces


@dataclass
class _Adapter:
    name: str
    path: str


class _StubState:
    def __init__(self, base_model: str, model_path: str, max_model_len: int) -> None:
        self.base_model = base_model
        self.model_path = model_path
        self.max_model_len = max_model_len
        self.adapters: dict[str, _Adapter] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def unknown_model(self, model: str | None) -> JSONResponse | None:
        if model is None or model == self.base_model or model in self.adapters:
            return None
        return _error(f"The model `{model}` does not exist.", "NotFoundError", 404, "model")


def create_vllm_stub(
    base_model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
    *,
    model_path: str | None = None,
    max_model_len: int = 4096,
    allow_runtime_lora: bool = True,
    check_adapter_paths: bool = True,
) -> FastAPI:
    """Build the stub app. ``app.state.stub.requests`` records each generation request's body.

    ``allow_runtime_lora=False`` leaves out the adapter routes, as vLLM does without
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``; ``check_adapter_paths`` makes a load fail with vLLM's 404
    when the path holds no ``adapter_config.json``.
    """
    state = _StubState(base_model, model_path or base_model, max_model_len)
    app = FastAPI(title="vLLM stub")
    app.state.stub = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # vLLM turns FastAPI's 422 into a 400 in its own error shape.
        return _error(str(exc.errors()), "BadRequestError", 400)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        cards = [_card(state.base_model, state.model_path, None, state.max_model_len, created)]
        cards += [_card(a.name, a.path, state.base_model, None, created) for a in state.adapters.values()]
        return {"object": "list", "data": cards}

    @app.post("/tokenize", response_model=None)
    async def tokenize(body: TokenizeRequest) -> JSONResponse:
        if (missing := state.unknown_model(body.model)) is not None:
            return missing
        if body.messages is not None:
            tokens = [
                token_id(t) for t in tokenize_text(render_chat(body.messages, body.add_generation_prompt))
            ]
            if body.add_special_tokens:
                tokens = [_BOS_ID, *tokens]
        elif body.prompt is not None:
            tokens = [token_id(t) for t in tokenize_text(body.prompt)]
            if body.add_special_tokens is not False:
                tokens = [_BOS_ID, *tokens]
        else:
            return _error("either 'prompt' or 'messages' must be given", "BadRequestError", 400)
        return JSONResponse(
            {"count": len(tokens), "max_model_len": state.max_model_len, "tokens": tokens, "token_strs": None}
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> Response:
        if (missing := state.unknown_model(body.model)) is not None:
            return missing
        model = body.model or state.base_model
        state.requests.append(body.model_dump())
        last_user = next(
            (str(m.get("content")) for m in reversed(body.messages) if m.get("role") == "user"), ""
        )
        prompt_tokens = len(tokenize_text(render_chat(body.messages)))
        return _respond(body, model, f"{model} says: {last_user}", prompt_tokens, chat=True)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest) -> Response:
        if (missing := state.unknown_model(body.model)) is not None:
            return missing
        if body.suffix is not None:
            return _error("suffix is not currently supported", "BadRequestError", 400)
        model = body.model or state.base_model
        state.requests.append(body.model_dump())
        prompt_tokens = 1 + len(tokenize_text(body.prompt))
        return _respond(body, model, f"[{model}] {body.prompt}", prompt_tokens, chat=False)

    if allow_runtime_lora:

        @app.post("/v1/load_lora_adapter", response_model=None)
        async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> Response:
            if not body.lora_name or not body.lora_path:
                return _error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
            with state.lock:
                if body.lora_name in state.adapters and not body.load_inplace:
                    return _error(
                        f"The lora adapter '{body.lora_name}' has already been loaded. If you want to load "
                        "the adapter in place, set 'load_inplace' to True.",
                        "InvalidUserInput",
                        400,
                    )
                if check_adapter_paths and not (Path(body.lora_path) / "adapter_config.json").is_file():
                    return _error(
                        f"Loading lora {body.lora_name} failed: No adapter found for {body.lora_path}",
                        "NotFoundError",
                        404,
                    )
                state.adapters[body.lora_name] = _Adapter(body.lora_name, body.lora_path)
            return Response(
                status_code=200, content=f"Success: LoRA adapter '{body.lora_name}' added successfully."
            )

        @app.post("/v1/unload_lora_adapter", response_model=None)
        async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> Response:
            if not body.lora_name:
                return _error(
                    "'lora_name' needs to be provided to unload a LoRA adapter.", "InvalidUserInput", 400
                )
            with state.lock:
                if body.lora_name not in state.adapters:
                    return _error(
                        f"The lora adapter '{body.lora_name}' cannot be found.", "NotFoundError", 404
                    )
                del state.adapters[body.lora_name]
            return Response(
                status_code=200, content=f"Success: LoRA adapter '{body.lora_name}' removed successfully."
            )

    return app


def _card(
    model_id: str, root: str, parent: str | None, max_model_len: int | None, created: int
) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": f"modelperm-{uuid.uuid4().hex}",
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }


def _respond(
    body: ChatRequest | CompletionRequest, model: str, text: str, prompt_tokens: int, *, chat: bool
) -> Response:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    pieces, finish, stop_reason, completion_tokens = _cut(text, body.max_tokens, stop)
    usage = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    head = {
        "id": request_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
    }
    if not body.stream:
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces)},
            }
        else:
            choice = {"index": 0, "text": "".join(pieces)}
        choice |= {"logprobs": None, "finish_reason": finish, "stop_reason": stop_reason}
        return JSONResponse({**head, "choices": [choice], "usage": usage})
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _events(head, pieces, finish, stop_reason, usage if include_usage else None, chat=chat),
        media_type="text/event-stream",
    )


def _events(
    head: dict[str, Any],
    pieces: list[str],
    finish: str,
    stop_reason: str | None,
    usage: dict[str, Any] | None,
    *,
    chat: bool,
) -> Iterator[str]:
    head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}

    def event(payload: dict[str, Any]) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    def choice(text: str, *, last: bool, first: bool = False) -> dict[str, Any]:
        if chat:
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            body: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
        else:
            body = {"index": 0, "text": text, "logprobs": None}
        body["finish_reason"] = finish if last else None
        body["stop_reason"] = stop_reason if last else None
        return body

    if chat:
        # vLLM opens a chat stream with the assistant role and empty content.
        yield event({**head, "choices": [choice("", last=False, first=True)]})
    for index, piece in enumerate(pieces):
        yield event({**head, "choices": [choice(piece, last=index == len(pieces) - 1)]})
    if not pieces:
        yield event({**head, "choices": [choice("", last=True)]})
    if usage is not None:
        yield event({**head, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


@dataclass
class RunningStub:
    """A stub served on loopback: ``root_url`` is the server root, ``base_url`` its ``/v1``."""

    root_url: str
    app: FastAPI

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


@contextmanager
def serve_vllm_stub(app: FastAPI | None = None, **stub_options: Any) -> Iterator[RunningStub]:
    """Serve ``app`` (default: ``create_vllm_stub(**stub_options)``) with uvicorn on a free loopback
    port in a background thread, for the duration of the ``with`` block."""
    app = app or create_vllm_stub(**stub_options)
    # Bound here and handed to uvicorn, so the port is known before the server starts and no other
    # process can take it in between.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the vLLM stub did not start")
        time.sleep(0.01)
    try:
        yield RunningStub(root_url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
