"""An autogen ``ChatCompletionClient`` over Genesys' own inference engine.

Agents (the Genesys assistant, and the society's agents in ``llm`` mode) talk to whichever engine is
configured through this client: llama.cpp on a laptop, transformers, or a vLLM server. Tool calling is
emulated in the prompt (``genesys.runtime.chat_format``) so that small local models can take part.

Build one client per conversation or request: it carries that request's adapter, generation
parameters and, for IDE requests, the IDE's own tool definitions (``client_tools``), which the model
may call but which the agent never executes — the calls go back to the IDE.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema

from genesys.runtime.chat_format import (
    content_text,
    may_be_tool_call,
    parse_tool_calls,
    render_tool_call,
    render_tools_prompt,
)
from genesys.runtime.engine_host import EngineHost
from genesys.runtime.engines.base import ChatMessage, EngineChunk, GenerationParams

MODEL_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": False,
    "family": "unknown",
    "structured_output": False,
    "multiple_system_messages": True,
}
# Output is held back, instead of streamed, while it may still be the start of a tool call.
_HOLD_CHARS = 16


def _schema(tool: Tool | ToolSchema) -> dict[str, Any]:
    schema = tool.schema if isinstance(tool, Tool) else tool
    return {"type": "function", "function": dict(schema)}


def to_engine_messages(messages: Sequence[LLMMessage], tools: list[dict[str, Any]]) -> list[ChatMessage]:
    """autogen messages to engine messages: all system text first, tool traffic as text."""
    system: list[str] = []
    turns: list[ChatMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            if message.content:
                system.append(message.content)
        elif isinstance(message, UserMessage):
            parts = message.content if isinstance(message.content, list) else [message.content]
            turns.append(ChatMessage("user", "\n".join(p for p in parts if isinstance(p, str))))
        elif isinstance(message, AssistantMessage):
            if isinstance(message.content, str):
                turns.append(ChatMessage("assistant", message.content))
            else:
                calls = [render_tool_call(c.name, c.arguments) for c in message.content]
                turns.append(ChatMessage("assistant", "\n".join(filter(None, [message.thought, *calls]))))
        elif isinstance(message, FunctionExecutionResultMessage):
            for result in message.content:
                turns.append(
                    ChatMessage("user", f"Result of {result.name or result.call_id}:\n{result.content}")
                )
    if tools:
        system.append(render_tools_prompt(tools))
    head = [ChatMessage("system", "\n\n".join(system))] if system else []
    return head + turns


class EngineChatCompletionClient(ChatCompletionClient):
    """Streams from an ``EngineHost``; not coroutine-safe: one per conversation or request."""

    def __init__(
        self,
        host: EngineHost,
        *,
        adapter: str | None = None,
        params: GenerationParams | None = None,
        client_tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self._host = host
        self._adapter = adapter
        self._params = params or GenerationParams()
        self._client_tools = list(client_tools or [])
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self.last_chunk: EngineChunk | None = None

    def _tools(self, tools: Sequence[Tool | ToolSchema]) -> list[dict[str, Any]]:
        return [*self._client_tools, *(_schema(t) for t in tools)]

    def engine_messages(
        self, messages: Sequence[LLMMessage], tools: Sequence[Tool | ToolSchema] = ()
    ) -> list[ChatMessage]:
        return to_engine_messages(messages, self._tools(tools))

    def _params_for(self, extra: Mapping[str, Any]) -> GenerationParams:
        known = {"max_tokens", "temperature", "top_p", "seed"}
        changes = {k: v for k, v in extra.items() if k in known and v is not None}
        if extra.get("stop"):
            stop = extra["stop"]
            changes["stop"] = tuple([stop] if isinstance(stop, str) else stop)
        return replace(self._params, **changes) if changes else self._params

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[Any] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        result: CreateResult | None = None
        async for item in self.create_stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        ):
            if isinstance(item, CreateResult):
                result = item
        assert result is not None  # create_stream always ends with a CreateResult
        return result

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[Any] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
        include_usage: bool | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        all_tools = self._tools(tools) if tool_choice != "none" else []
        engine_messages = to_engine_messages(messages, all_tools)
        params = self._params_for(extra_create_args)
        text: list[str] = []
        held = ""
        holding = bool(all_tools)
        final: EngineChunk | None = None
        async for chunk in self._host.stream_chat(engine_messages, params, self._adapter):
            if cancellation_token is not None and cancellation_token.is_cancelled():
                break
            if chunk.finish_reason is not None:
                final = chunk
            if not chunk.text:
                continue
            text.append(chunk.text)
            if holding:
                held += chunk.text
                if len(held.strip()) >= _HOLD_CHARS and not may_be_tool_call(held):
                    holding = False
                    yield held
                    held = ""
                continue
            yield chunk.text
        output = "".join(text)
        self.last_chunk = final
        usage = RequestUsage(
            prompt_tokens=final.prompt_tokens if final else 0,
            completion_tokens=final.completion_tokens if final else 0,
        )
        self._last = usage
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self._total.completion_tokens + usage.completion_tokens,
        )
        remaining, calls = parse_tool_calls(output, all_tools) if all_tools else (output, [])
        if calls:
            yield CreateResult(
                finish_reason="function_calls",
                content=[
                    FunctionCall(id=c["id"], name=c["function"]["name"], arguments=c["function"]["arguments"])
                    for c in calls
                ],
                usage=usage,
                cached=False,
                thought=remaining or None,
            )
            return
        if held:
            yield held
        finish = final.finish_reason if final and final.finish_reason == "length" else "stop"
        yield CreateResult(finish_reason=finish, content=output, usage=usage, cached=False)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        self._host.ensure_ready()
        return self._host.engine.count_chat_tokens(self.engine_messages(messages, tools))

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []
    ) -> int:
        return self._params.max_tokens - self.count_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:
        return {"vision": False, "function_calling": True, "json_output": False}

    @property
    def model_info(self) -> ModelInfo:
        return MODEL_INFO


def openai_to_llm_messages(messages: list[dict[str, Any]]) -> list[LLMMessage]:
    """OpenAI chat messages (as an IDE sends them) to autogen ``LLMMessage`` objects."""
    from autogen_core.models import FunctionExecutionResult

    out: list[LLMMessage] = []
    names: dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        text = content_text(message.get("content"))
        if role in ("system", "developer"):
            out.append(SystemMessage(content=text))
        elif role == "assistant":
            calls = [
                FunctionCall(
                    id=str(c.get("id") or f"call_{i}"),
                    name=str(c["function"]["name"]),
                    arguments=c["function"].get("arguments") or "{}"
                    if isinstance(c["function"].get("arguments", "{}"), str)
                    else json.dumps(c["function"]["arguments"]),
                )
                for i, c in enumerate(message.get("tool_calls") or [])
                if isinstance(c, dict) and isinstance(c.get("function"), dict) and c["function"].get("name")
            ]
            for call in calls:
                names[call.id] = call.name
            if calls:
                out.append(AssistantMessage(content=calls, thought=text or None, source="assistant"))
            else:
                out.append(AssistantMessage(content=text, source="assistant"))
        elif role in ("tool", "function"):
            call_id = str(message.get("tool_call_id") or message.get("name") or "tool")
            result = FunctionExecutionResult(
                content=text, call_id=call_id, name=names.get(call_id, str(message.get("name") or call_id))
            )
            out.append(FunctionExecutionResultMessage(content=[result]))
        else:
            out.append(UserMessage(content=text, source=str(message.get("name") or "user")))
    return out
