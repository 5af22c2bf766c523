"""``POST /v1/chat/completions``: the Genesys assistant answers, streamed (SSE) or whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from genesys.agents.genesys import PreparedTurn, TurnResult
from genesys.api.deps import ServicesDep, UserCaller
from genesys.api.errors import sse_error
from genesys.api.implicit_feedback import watch_for_implicit_feedback
from genesys.api.schemas import ChatCompletionRequest
from genesys.api.serving import (
    CONVERSATION_HEADER,
    SSE_DONE,
    SSE_HEADERS,
    Exchange,
    generation_params,
    resolve_route,
    sse,
)
from genesys.runtime.interaction_log import conversation_id_for, ide_context

router = APIRouter(tags=["chat"])
log = structlog.get_logger(__name__)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, services: ServicesDep, caller: UserCaller
) -> JSONResponse | StreamingResponse:
    user = body.user or caller.name
    conversation = conversation_id_for(body.messages, user, request.headers.get(CONVERSATION_HEADER))
    route = resolve_route(services, body.model, user=user, conversation_id=conversation)
    services.host.ensure_ready()
    params = generation_params(services, body, body.completion_limit)
    tools = body.tools if body.tool_choice != "none" else None
    # Retrieval embeds the question (~20 ms of CPU): off the event loop, which serves other streams.
    hits = (
        await asyncio.to_thread(services.assistant.retrieve, body.messages) if services.assistant.docs else []
    )
    turn = services.assistant.prepare(
        body.messages, params=params, adapter=route.adapter, tools=tools, docs=hits
    )
    exchange = Exchange(
        endpoint="chat",
        route=route,
        model=body.model,
        conversation_id=conversation,
        user=user,
        request_id=request.scope.get("state", {}).get("request_id"),
        messages=body.messages,
        context={
            **ide_context(body.messages, body.tools, params.__dict__ | {"stream": body.stream}),
            "prompt_version": turn.prompt_version,
            **({"docs": [hit.chunk_id for hit in turn.docs]} if turn.docs else {}),
            "client": request.headers.get("user-agent"),
        },
    )
    watch_for_implicit_feedback(services, exchange)
    if body.stream:
        return StreamingResponse(
            _stream(services, exchange, turn, body.include_usage),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **exchange.headers},
        )
    result = await _collect(services, exchange, turn)
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    else:
        message["content"] = result.text
    return JSONResponse(
        {
            "id": exchange.id,
            "object": "chat.completion",
            "created": exchange.created,
            "model": exchange.model,
            "system_fingerprint": exchange.route.model_version,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}
            ],
            "usage": _usage(result),
        },
        headers=exchange.headers,
    )


def _usage(result: TurnResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _collect(services: ServicesDep, exchange: Exchange, turn: PreparedTurn) -> TurnResult:
    text: list[str] = []
    try:
        async for item in services.assistant.stream(turn):
            if isinstance(item, str):
                exchange.mark_token()
                text.append(item)
            else:
                await services.log.record(_interaction(exchange, item))
                return item
    except Exception as exc:
        await services.log.record(exchange.interaction("".join(text), status="error", error=str(exc)))
        raise
    raise RuntimeError("the assistant ended without a result")  # pragma: no cover


def _interaction(exchange: Exchange, result: TurnResult) -> Any:
    return exchange.interaction(
        result.text,
        tool_calls=result.tool_calls,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        finish_reason=result.finish_reason,
    )


async def _stream(
    services: ServicesDep, exchange: Exchange, turn: PreparedTurn, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": exchange.id,
            "object": "chat.completion.chunk",
            "created": exchange.created,
            "model": exchange.model,
            "system_fingerprint": exchange.route.model_version,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return sse(payload)

    text: list[str] = []
    recorded = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for item in services.assistant.stream(turn):
            if isinstance(item, str):
                exchange.mark_token()
                text.append(item)
                yield chunk({"content": item})
                continue
            # Commit before the last chunks leave: a reply the client saw complete is never lost.
            await services.log.record(_interaction(exchange, item))
            recorded = True
            if item.tool_calls:
                yield chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(item.tool_calls)]})
            yield chunk({}, item.finish_reason)
            if include_usage:
                yield sse(
                    {
                        "id": exchange.id,
                        "object": "chat.completion.chunk",
                        "created": exchange.created,
                        "model": exchange.model,
                        "choices": [],
                        "usage": _usage(item),
                    }
                )
            yield SSE_DONE
    except Exception as exc:
        log.error("chat.stream_failed", interaction_id=exchange.id, error=str(exc))
        if not recorded:
            recorded = True
            await services.log.record(exchange.interaction("".join(text), status="error", error=str(exc)))
        yield sse_error(exc)
        yield SSE_DONE
    finally:
        if not recorded:  # the client went away mid-answer: keep what it was sent
            services.log.record_in_background(exchange.interaction("".join(text), status="cancelled"))
