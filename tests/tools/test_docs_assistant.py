"""Retrieval in the assistant's context: the relevant chunk for a related question, nothing for an
unrelated one, never over the context window; and the same through the live API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from autogen_core.models import LLMMessage, SystemMessage, UserMessage

from genesys.agents.genesys import GenesysAssistant, PreparedTurn
from genesys.runtime.embeddings import Embedder
from genesys.runtime.engine_host import EngineHost
from genesys.runtime.engines.base import GenerationParams
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.settings import Settings
from genesys.runtime.vectors import VectorStore
from genesys.tools.docs_index import DOCS_PREAMBLE, DocsRetriever, add_docs
from tests.conftest import LiveServer

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs" / "fernwick"
RELATED = "How can I make fernwick jobs run synchronously inside my unit tests?"
UNRELATED = "Reverse a list in Python"


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are in an IDE."}, {"role": "user", "content": text}]


def context_of(turn: PreparedTurn) -> list[LLMMessage]:
    return asyncio.run(turn.agent.model_context.get_messages())


@pytest.fixture()
def indexed_settings(settings: Settings, embedder: Embedder) -> Settings:
    add_docs(VectorStore.from_settings(settings, embedder=embedder), DOCS)
    return settings


def assistant(settings: Settings, engine: Any, *, context_window: int = 4096) -> GenesysAssistant:
    return GenesysAssistant(
        EngineHost(engine),
        PromptLibrary(),
        context_window=context_window,
        docs=DocsRetriever.from_settings(settings),
    )


def test_a_related_question_gets_the_relevant_chunk_in_its_context(
    indexed_settings: Settings, llama_engine: Any
) -> None:
    plain = GenesysAssistant(EngineHost(llama_engine), PromptLibrary(), context_window=4096)
    without = plain.prepare(ask(RELATED), params=GenerationParams(), adapter=None)

    turn = assistant(indexed_settings, llama_engine).prepare(
        ask(RELATED), params=GenerationParams(), adapter=None
    )

    messages = context_of(turn)
    assert isinstance(messages[0], SystemMessage) and messages[0].content == "You are in an IDE."
    docs, question = messages[-2], messages[-1]
    assert isinstance(docs, SystemMessage) and docs.content.startswith(DOCS_PREAMBLE)
    assert "fernwick/guide.txt — Fernwick operations guide > Testing code that grafts jobs" in docs.content
    assert "with fernwick.greenhouse():" in docs.content
    assert isinstance(question, UserMessage) and question.content == RELATED
    assert turn.docs and turn.docs[0].title == "Testing code that grafts jobs"
    assert turn.prompt_tokens > without.prompt_tokens + 50


def test_an_unrelated_question_gets_nothing(indexed_settings: Settings, llama_engine: Any) -> None:
    turn = assistant(indexed_settings, llama_engine).prepare(
        ask(UNRELATED), params=GenerationParams(), adapter=None
    )

    messages = context_of(turn)
    assert turn.docs == []
    assert len(messages) == 2
    assert not any(isinstance(m, SystemMessage) and DOCS_PREAMBLE in str(m.content) for m in messages)


def test_docs_are_left_out_when_they_would_overflow_the_context_window(
    indexed_settings: Settings, llama_engine: Any
) -> None:
    plain = GenesysAssistant(EngineHost(llama_engine), PromptLibrary(), context_window=4096)
    base = plain.prepare(ask(RELATED), params=GenerationParams(), adapter=None).prompt_tokens

    turn = assistant(indexed_settings, llama_engine, context_window=base + 10).prepare(
        ask(RELATED), params=GenerationParams(), adapter=None
    )

    assert turn.docs == [] and turn.prompt_tokens == base
    assert len(context_of(turn)) == 2


@pytest.mark.slow
def test_the_api_answers_with_the_docs_in_its_prompt(live_server: LiveServer, embedder: Embedder) -> None:
    used: dict[str, list[str]] = {}

    def prompt_tokens(question: str) -> int:
        response = httpx.post(
            f"{live_server.api}/chat/completions",
            json={"model": "genesys-local", "messages": ask(question), "max_tokens": 1},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        stored = live_server.services.store.interactions.get(response.json()["id"])
        assert stored is not None
        used[question] = stored.context.get("docs", [])
        return int(response.json()["usage"]["prompt_tokens"])

    before = prompt_tokens(RELATED), prompt_tokens(UNRELATED)
    add_docs(VectorStore.from_settings(live_server.settings, embedder=embedder), DOCS)
    after = prompt_tokens(RELATED), prompt_tokens(UNRELATED)

    assert after[0] > before[0] + 50  # the chunk went into the prompt
    assert after[1] == before[1]
    # The interaction records which chunks it was given (the last asks: after indexing).
    assert used[RELATED] and not used[UNRELATED]
