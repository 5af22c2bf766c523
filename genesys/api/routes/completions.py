"""Autocomplete: ``POST /v1/completions`` (OpenAI, ``suffix`` optional) and ``POST /v1/fim/completions``
(Mistral's fill-in-the-middle shape, which Continue's autocomplete speaks). Served by the engine
directly, without the assistant agent: autocomplete has to be fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from genesys.api.deps import Services, ServicesDep, UserCaller
from genesys.api.errors import sse_error
from genesys.api.schemas import CompletionRequest, FimCompletionRequest
from genesys.api.serving import (
    CONVERSATION_HEADER,
    SSE_DONE,
    SSE_HEADERS,
    Exchange,
    generation_params,
    resolve_route,
    sse,
)
from genesys.errors import LimitExceeded
from genesys.runtime.engines.base import EngineChunk, GenerationParams
from genesys.runtime.interaction_log import conversation_id_for

router = APIRouter(tags=["completions"])
log = structlog.get_logger(__name__)
Shape = Literal["openai", "fim"]


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionRequest, request: Request, services: ServicesDep, caller: UserCaller
) -> JSONResponse | StreamingResponse:
    return await _serve(services, request, caller.name, body, body.prompt_text, body.suffix, "openai")


@router.post("/v1/fim/completions", response_model=None)
async def fim_completions(
    body: FimCompletionRequest, request: Request, services: ServicesDep, caller: UserCaller
) -> JSONResponse | StreamingResponse:
    return await _serve(services, request, caller.name, body, body.prompt, body.suffix or "", "fim")


async def _serve(
    services: Services,
    request: Request,
    key_name: str | None,
    body: CompletionRequest | FimCompletionRequest,
    prompt: str,
    suffix: str | None,
    shape: Shape,
) -> JSONResponse | StreamingResponse:
    user = body.user or key_name
    messages = [{"role": "user", "content": prompt}]
    conversation = conversation_id_for(messages, user, request.headers.get(CONVERSATION_HEADER))
    route = resolve_route(services, body.model, user=user, conversation_id=conversation)
    services.host.ensure_ready()
    params = generation_params(services, body, body.max_tokens)
    window = services.settings.data_collection.context_window
    prompt_tokens = await services.host.count_tokens(prompt + (suffix or ""))
    if prompt_tokens > window:
        raise LimitExceeded(
            f"This model's maximum context length is {window} tokens. However, your prompt resulted in "
            f"{prompt_tokens} tokens. Please reduce the length of the prompt.",
            param="prompt",
            code="context_length_exceeded",
        )
    exchange = Exchange(
        endpoint="fim" if shape == "fim" or suffix else "completion",
        route=route,
        model=body.model,
        conversation_id=conversation,
        user=user,
        request_id=request.scope.get("state", {}).get("request_id"),
        messages=messages,
        context={"suffix": suffix, "params": params.__dict__ | {"stream": body.stream}},
    )
    if body.stream:
        return StreamingResponse(
            _stream(services, exchange, prompt, suffix, params, shape, body.include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **exchange.headers},
        )
    text: list[str] = []
    final = EngineChunk("")
    try:
        async for piece in services.host.stream_completion(prompt, params, route.adapter, suffix):
            exchange.mark_token()
            text.append(piece.text)
            final = piece if piece.finish_reason else final
    except Exception as exc:
        await services.log.record(exchange.interaction("".join(text), status="error", error=str(exc)))
        raise
    answer = "".join(text)
    await services.log.record(_interaction(exchange, answer, final))
    return JSONResponse(
        _body(exchange, answer, final.finish_reason or "stop", shape, usage=_usage(final)),
        headers=exchange.headers,
    )


def _interaction(exchange: Exchange, answer: str, final: EngineChunk) -> Any:
    return exchange.interaction(
        answer,
        prompt_tokens=final.prompt_tokens,
        completion_tokens=final.completion_tokens,
        finish_reason=final.finish_reason,
    )


def _usage(final: EngineChunk) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.completion_tokens,
        "total_tokens": final.prompt_tokens + final.completion_tokens,
    }


def _body(
    exchange: Exchange,
    text: str,
    finish: str | None,
    shape: Shape,
    *,
    stream: bool = False,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A completion (or chunk) in OpenAI's text shape or Mistral's FIM (chat-like) shape."""
    if shape == "openai":
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    elif stream:
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        obj = "chat.completion"
    payload: dict[str, Any] = {
        "id": exchange.id,
        "object": obj,
        "created": exchange.created,
        "model": exchange.model,
        "system_fingerprint": exchange.route.model_version,
        "choices": [choice],
    }
    if usage is not None or not stream:
        payload["usage"] = usage
    return payload


async def _stream(
    services: Services,
    exchange: Exchange,
    prompt: str,
    suffix: str | None,
    params: GenerationParams,
    shape: Shape,
    include_usage: bool,
) -> AsyncIterator[str]:
    text: list[str] = []
    recorded = False
    try:
        async for piece in services.host.stream_completion(prompt, params, exchange.route.adapter, suffix):
            if piece.text:
                exchange.mark_token()
                text.append(piece.text)
                yield sse(_body(exchange, piece.text, None, shape, stream=True))
            if piece.finish_reason:
                await services.log.record(_interaction(exchange, "".join(text), piece))
                recorded = True
                yield sse(_body(exchange, "", piece.finish_reason, shape, stream=True))
                if include_usage:
                    usage_chunk = _body(exchange, "", None, shape, stream=True, usage=_usage(piece))
                    usage_chunk["choices"] = []
                    yield sse(usage_chunk)
        yield SSE_DONE
    except Exception as exc:
        log.error("completion.stream_failed", interaction_id=exchange.id, error=str(exc))
        if not recorded:
            recorded = True
            await services.log.record(exchange.interaction("".join(text), status="error", error=str(exc)))
        yield sse_error(exc)
        yield SSE_DONE
    finally:
        if not recorded:
            services.log.record_in_background(exchange.interaction("".join(text), status="cancelled"))
