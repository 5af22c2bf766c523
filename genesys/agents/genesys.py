"""The Genesys assistant: the agent that answers IDE users.

An autogen-agentchat ``AssistantAgent`` whose system prompt is ``prompts/genesys.md`` (re-read when
it changes) and whose model is the configured engine, through ``EngineChatCompletionClient``. The
IDE's conversation becomes the agent's model context; the IDE's system prompt and tools go with it.
When the model calls one of the IDE's tools, the call is returned to the IDE (OpenAI ``tool_calls``),
never executed here.

When documentation is indexed (``genesys docs add``), ``prepare`` puts the chunks relevant to the
last user message into the context as one more system message that names their sources
(``genesys.tools.docs_index.DocsRetriever``); nothing is added when no docs are indexed or none is
relevant, and the retrieved chunks never push a prompt over the context window.

One agent is built per request: agents are not coroutine-safe.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import ModelClientStreamingChunkEvent, ToolCallRequestEvent
from autogen_core import CancellationToken
from autogen_core.model_context import UnboundedChatCompletionContext
from autogen_core.models import LLMMessage, SystemMessage

from genesys.agents.model_client import EngineChatCompletionClient, openai_to_llm_messages
from genesys.errors import LimitExceeded
from genesys.runtime.engine_host import EngineHost
from genesys.runtime.engines.base import FinishReason, GenerationParams
from genesys.runtime.interaction_log import last_user_text
from genesys.runtime.prompts import PromptLibrary
from genesys.tools.docs_index import DocHit, DocsRetriever, docs_context

ASSISTANT_PROMPT = "genesys"


@dataclass
class TurnResult:
    """How a turn ended: the whole text, the tool calls for the IDE, the usage."""

    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_version: str = ""


@dataclass
class PreparedTurn:
    agent: AssistantAgent
    client: EngineChatCompletionClient
    prompt_tokens: int
    prompt_version: str
    docs: list[DocHit] = field(default_factory=list)
    """The documentation chunks put into the context (empty when none)."""


class GenesysAssistant:
    """Builds and runs the assistant agent for one request at a time (any number concurrently)."""

    def __init__(
        self,
        host: EngineHost,
        prompts: PromptLibrary,
        *,
        context_window: int,
        docs: DocsRetriever | None = None,
    ) -> None:
        self.host = host
        self.prompts = prompts
        self.context_window = context_window
        self.docs = docs

    def prepare(
        self,
        messages: list[dict[str, Any]],
        *,
        params: GenerationParams,
        adapter: str | None,
        tools: list[dict[str, Any]] | None = None,
        docs: list[DocHit] | None = None,
    ) -> PreparedTurn:
        """Build the agent for a request; raises ``LimitExceeded`` if the prompt is too long.
        ``docs``: chunks already retrieved (``retrieve``, off the event loop); None: retrieve here.

        With a docs retriever, the chunks relevant to the last user message go into the context as a
        system message just before it; they are left out again when they would make the prompt longer
        than the context window (one token count more, only then). Retrieval costs one MiniLM embedding
        and one Chroma query when docs are indexed (about 19 ms on 2 busy CPU cores, see
        ``DocsRetriever``), under a millisecond when none are.
        """
        prompt = self.prompts.get(ASSISTANT_PROMPT)
        history: list[LLMMessage] = list(openai_to_llm_messages(messages))
        client = EngineChatCompletionClient(self.host, adapter=adapter, params=params, client_tools=tools)
        hits = self.retrieve(messages) if docs is None else docs
        context = _with_docs(history, hits)
        prompt_tokens = client.count_tokens([SystemMessage(content=prompt.text), *context])
        if hits and prompt_tokens > self.context_window:
            hits, context = [], history
            prompt_tokens = client.count_tokens([SystemMessage(content=prompt.text), *context])
        if prompt_tokens > self.context_window:
            raise LimitExceeded(
                f"This model's maximum context length is {self.context_window} tokens. However, your "
                f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        agent = AssistantAgent(
            "genesys",
            model_client=client,
            system_message=prompt.text,
            model_client_stream=True,
            model_context=UnboundedChatCompletionContext(initial_messages=context),
            description="Answers IDE users' coding questions.",
        )
        return PreparedTurn(agent, client, prompt_tokens, prompt.version, hits)

    def retrieve(self, messages: list[dict[str, Any]]) -> list[DocHit]:
        """The documentation chunks relevant to the last user message (blocking: MiniLM, Chroma)."""
        return self.docs.retrieve(last_user_text(messages)) if self.docs is not None else []

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[str | TurnResult]:
        """Text deltas as the model writes them, then one ``TurnResult``."""
        token = CancellationToken()
        text: list[str] = []
        result: TurnResult | None = None
        events = turn.agent.on_messages_stream([], token)
        try:
            async for event in events:
                if isinstance(event, ModelClientStreamingChunkEvent):
                    text.append(event.content)
                    yield event.content
                elif isinstance(event, ToolCallRequestEvent):
                    # The IDE runs its own tools: stop before the agent tries to execute them.
                    calls = [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": _json_text(call.arguments)},
                        }
                        for call in event.content
                    ]
                    result = self._result("".join(text), turn, calls, "tool_calls")
                    break
                elif isinstance(event, Response):
                    result = self._result("".join(text), turn, [], None)
        finally:
            token.cancel()
            await events.aclose()
        yield result if result is not None else self._result("".join(text), turn, [], None)

    def _result(
        self, text: str, turn: PreparedTurn, calls: list[dict[str, Any]], finish: FinishReason | None
    ) -> TurnResult:
        last = turn.client.last_chunk
        return TurnResult(
            text=text,
            tool_calls=calls,
            finish_reason=finish or (last.finish_reason if last and last.finish_reason else "stop"),
            prompt_tokens=last.prompt_tokens if last else turn.prompt_tokens,
            completion_tokens=last.completion_tokens if last else 0,
            prompt_version=turn.prompt_version,
        )


def _with_docs(history: list[LLMMessage], hits: list[DocHit]) -> list[LLMMessage]:
    """The history with the documentation message before its last message (the user's question)."""
    if not hits:
        return history
    docs = SystemMessage(content=docs_context(hits))
    return [*history[:-1], docs, *history[-1:]]


def _json_text(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments))
    except (json.JSONDecodeError, TypeError):
        return json.dumps({"input": arguments})
