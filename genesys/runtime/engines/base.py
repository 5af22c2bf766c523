"""The one interface every inference engine implements.

Engines are synchronous: ``stream_chat`` and ``stream_completion`` return iterators of
``EngineChunk``. ``genesys.runtime.engine_host`` runs them in a worker thread for the async server.
Messages reaching an engine are plain ``{"role", "content"}`` dicts with string content; tool
definitions and tool calls are rendered to text above the engine (``genesys.runtime.tool_calls``),
so that every engine, whatever its chat template, serves IDE agent requests the same way.

``adapter`` names a LoRA adapter version the engine has loaded (``load_adapter``); ``None`` means
the base model.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class EngineChunk:
    """A piece of generated text; the last chunk of a stream carries ``finish_reason`` and usage."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class EngineInfo:
    engine: str
    base_model: str
    adapters: list[str] = field(default_factory=list)
    supports_fim: bool = False


def suffix_stops(params: GenerationParams, suffix: str | None) -> list[str]:
    """Stop strings for fill-in-the-middle on a model without FIM tokens.

    The prefix is continued and generation stops where the suffix's first line begins; a line of one
    or two characters (a closing brace) would stop the completion too early, so it is not used.
    """
    stop = list(params.stop)
    if suffix:
        first_line = suffix.lstrip("\n").split("\n", 1)[0].strip()
        if len(first_line) >= 3:
            stop.append(first_line)
    return stop


class InferenceEngine(abc.ABC):
    """An engine that generates text for chat messages or a raw prompt."""

    kind: str

    @abc.abstractmethod
    def load(self) -> None:
        """Load the base model (blocking). Raises ``EngineUnavailable`` when it cannot."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether ``load`` finished and the engine can serve."""

    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    @abc.abstractmethod
    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        """Tokens the prompt built from ``messages`` takes, chat template included."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abc.abstractmethod
    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> Iterator[EngineChunk]:
        """Generate the assistant's reply with the model's own chat template."""

    @abc.abstractmethod
    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> Iterator[EngineChunk]:
        """Continue ``prompt``; with ``suffix``, fill in the middle between the two."""

    @abc.abstractmethod
    def load_adapter(self, name: str, path: Path) -> None:
        """Make the LoRA adapter at ``path`` servable as ``name``. Raises ``EngineError``."""

    @abc.abstractmethod
    def unload_adapter(self, name: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine's resources."""
