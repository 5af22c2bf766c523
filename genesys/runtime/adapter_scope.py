"""Adapter scope: an adapter answers the questions it was trained for; the base model answers the rest.

A LoRA adapter trained on a few dozen corrections learns their facts, and drifts on everything else: on
SmolLM2-135M the candidates that learned half of the Fernwick facts lost 3-4 of the 10 HumanEval guard
problems the base solves, whatever the replay (README, "Benchmarks"). Scoping keeps the drift away from
what the adapter was not trained for. Each adapter carries ``scope.json``: the questions of its training
rows and a similarity threshold. A request whose last user message (a completion: its prompt's end) has
a MiniLM cosine similarity of at least the threshold to one of those questions goes to the adapter, any
other to the base model. Unseen phrasings of a trained question are close to it (0.69 to 0.91 on the
Fernwick scenario) and a HumanEval prompt is not (at most 0.37 over all 164).

The threshold is calibrated from the training data alone, never from held-out data: halfway between
how close the training questions are to their own paraphrases (the 5th percentile, over rows whose
answer has another question) and how close general coding prompts come to them (the maximum over the
replay pool, ``genesys/tools/training/replay_prompts.json``), kept within [0.4, 0.8]; 0.55 when the
rows have no paraphrases. ``training_pipeline.adapter_scope_threshold`` overrides it.

``ScopedEngine`` wraps any engine and applies the scope of each adapter loaded with one; adapters
without ``scope.json`` (or with the scope off) answer everything, as before. Serving, validation and
the HumanEval guard all go through it, so the Validator measures what users get.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from genesys.errors import EngineError
from genesys.runtime.chat_format import content_text
from genesys.runtime.engines.base import (
    ChatMessage,
    EngineChunk,
    EngineInfo,
    GenerationParams,
    InferenceEngine,
)
from genesys.runtime.interaction_log import last_user_text

if TYPE_CHECKING:
    import numpy as np

log = structlog.get_logger(__name__)

SCOPE_FILE = "scope.json"
DEFAULT_THRESHOLD = 0.55
THRESHOLD_RANGE = (0.4, 0.8)
PARAPHRASE_PERCENTILE = 5
# A completion's prompt is code up to the cursor; its last lines say what is being written.
COMPLETION_TAIL_CHARS = 1000

Embed = Callable[[Sequence[str]], "np.ndarray"]


class AdapterScope(BaseModel):
    """What ``scope.json`` holds."""

    threshold: float = Field(ge=-1.0, le=1.0, description="Least cosine similarity that is in scope.")
    questions: list[str] = Field(min_length=1, description="The training rows' questions.")
    reasons: list[str] = Field(default_factory=list, description="How the threshold was chosen.")
    embedding_model: str = "all-MiniLM-L6-v2"

    def write(self, adapter_dir: Path) -> Path:
        path = Path(adapter_dir) / SCOPE_FILE
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def read(cls, adapter_dir: Path) -> AdapterScope | None:
        """The scope beside an adapter, None when it has none. Raises ``EngineError`` for a bad file."""
        path = Path(adapter_dir) / SCOPE_FILE
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise EngineError(f"{path} is not a valid adapter scope: {exc}") from exc


def build_scope(
    questions: Sequence[str],
    answers: Sequence[str],
    general_prompts: Sequence[str],
    embed: Embed,
    *,
    threshold: float | None = None,
) -> AdapterScope:
    """The scope of an adapter trained on rows (``questions[i]`` answered by ``answers[i]``), calibrated
    against ``general_prompts`` (see the module docstring); ``threshold`` overrides the calibration.

    Raises ``ValueError`` when there is no question or the lists differ in length.
    """
    import numpy as np

    if not questions:
        raise ValueError("an adapter scope needs at least one training question")
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    unique = list(dict.fromkeys(questions))
    if threshold is not None:
        return AdapterScope(
            threshold=threshold, questions=unique, reasons=[f"threshold {threshold} from configuration"]
        )
    vectors = embed(list(questions))
    similarity = vectors @ vectors.T
    paraphrase = []
    for index, answer in enumerate(answers):
        others = [
            j for j, other in enumerate(answers) if other == answer and questions[j] != questions[index]
        ]
        if others:
            paraphrase.append(float(similarity[index, others].max()))
    low, high = THRESHOLD_RANGE
    reasons = []
    if not paraphrase:
        chosen = DEFAULT_THRESHOLD
        reasons.append(f"no answer has two questions to compare: default threshold {DEFAULT_THRESHOLD}")
    else:
        near = float(np.percentile(paraphrase, PARAPHRASE_PERCENTILE))
        general = float((embed(list(general_prompts)) @ vectors.T).max()) if general_prompts else 0.0
        chosen = (near + general) / 2
        reasons.append(
            f"paraphrases of a training question are at least {near:.3f} similar to it "
            f"({PARAPHRASE_PERCENTILE}th percentile of {len(paraphrase)} rows); general prompts at most "
            f"{general:.3f} ({len(general_prompts)} prompts): threshold halfway, {chosen:.3f}"
        )
    if not low <= chosen <= high:
        clipped = min(max(chosen, low), high)
        reasons.append(f"{chosen:.3f} is outside [{low}, {high}]: {clipped}")
        chosen = clipped
    return AdapterScope(threshold=round(chosen, 4), questions=unique, reasons=reasons)


class _LoadedScope:
    def __init__(self, scope: AdapterScope, vectors: np.ndarray) -> None:
        self.scope = scope
        self.vectors = vectors

    def similarity(self, query: np.ndarray) -> float:
        return float((self.vectors @ query).max())


class ScopedEngine(InferenceEngine):
    """``inner`` with each adapter's scope applied: out-of-scope requests are answered by the base.

    ``embed`` turns texts into unit-length rows (the MiniLM of ``shared_embedder`` by default, loaded on
    the first adapter that has a scope). ``on_decision(adapter, similarity, applied)`` hears every
    decision (metrics, tests).
    """

    def __init__(
        self,
        inner: InferenceEngine,
        *,
        embed: Embed | None = None,
        on_decision: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._embed = embed
        self.on_decision = on_decision
        self._scopes: dict[str, _LoadedScope] = {}
        self._lock = threading.Lock()

    # -- the scope ------------------------------------------------------------------------------

    def scope_of(self, adapter: str) -> AdapterScope | None:
        loaded = self._scopes.get(adapter)
        return loaded.scope if loaded else None

    def route(self, adapter: str | None, text: str) -> str | None:
        """The adapter that answers ``text``: ``adapter`` when it has no scope or ``text`` is in it,
        else None (the base model)."""
        if adapter is None:
            return None
        loaded = self._scopes.get(adapter)
        if loaded is None:
            return adapter
        similarity = loaded.similarity(self._embedder()([text or " "])[0])
        applied = similarity >= loaded.scope.threshold
        log.debug("adapter_scope.decision", adapter=adapter, similarity=round(similarity, 3), applied=applied)
        if self.on_decision is not None:
            self.on_decision(adapter, similarity, applied)
        return adapter if applied else None

    def _embedder(self) -> Embed:
        if self._embed is None:
            from genesys.runtime.embeddings import shared_embedder

            self._embed = shared_embedder().embed
        return self._embed

    # -- the engine -----------------------------------------------------------------------------

    def load(self) -> None:
        self.inner.load()

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def info(self) -> EngineInfo:
        return self.inner.info()

    def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_chat_tokens(messages)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> Iterator[EngineChunk]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        return self.inner.stream_chat(messages, params, self.route(adapter, content_text(question)))

    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> Iterator[EngineChunk]:
        chosen = self.route(adapter, prompt[-COMPLETION_TAIL_CHARS:])
        return self.inner.stream_completion(prompt, params, chosen, suffix)

    def load_adapter(self, name: str, path: Path) -> None:
        """Load the adapter into the inner engine, and its scope when it has ``scope.json``. Raises
        ``EngineError`` for a malformed scope (and loads nothing)."""
        scope = AdapterScope.read(path)
        vectors = self._embedder()(scope.questions) if scope is not None else None
        self.inner.load_adapter(name, path)
        with self._lock:
            if scope is not None and vectors is not None:
                self._scopes[name] = _LoadedScope(scope, vectors)
                log.info(
                    "adapter_scope.loaded",
                    adapter=name,
                    questions=len(scope.questions),
                    threshold=scope.threshold,
                )
            else:
                self._scopes.pop(name, None)

    def unload_adapter(self, name: str) -> None:
        self.inner.unload_adapter(name)
        with self._lock:
            self._scopes.pop(name, None)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # engine-specific attributes (model_path, ...)
        if name == "inner":  # not set yet (copy, unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.inner, name)


def questions_and_answers(chat_jsonl: Path) -> tuple[list[str], list[str]]:
    """Each training row's last user message and its answer (the last assistant message)."""
    questions, answers = [], []
    for line in Path(chat_jsonl).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line).get("messages") or []
        question = last_user_text(messages)
        answer = next((m.get("content") for m in reversed(messages) if m.get("role") == "assistant"), None)
        if question and answer is not None:
            questions.append(question)
            answers.append(content_text(answer))
    return questions, answers
