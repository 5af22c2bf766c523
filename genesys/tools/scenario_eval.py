"""``evaluate_scenario``: how many of a scenario's questions a model version answers right.

The questions are asked as Genesys serves them (the assistant's system prompt, then the question),
greedily, through an inference engine. An answer is right when
it contains every ``expected`` string of its item (``genesys.tools.scenario.is_right``). ``genesys
eval`` and ``genesys bench learn`` print the result; the ``holdout`` split measures generalisation to
phrasings that were never trained on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.ab_router import BASE_VERSION
from genesys.runtime.engines.base import ChatMessage, GenerationParams
from genesys.tools.scenario import Scenario, Split, is_right

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine

# Long enough for the facts of a short answer; the scenario's answers are one or two sentences.
EVAL_MAX_TOKENS = 96

Ask = Callable[[str], str]
Progress = Callable[[int, int], None]


class ItemResult(BaseModel):
    id: str
    question: str
    expected: list[str]
    answer: str
    right: bool


class ScenarioEval(BaseModel):
    """One split of a scenario asked to one model version."""

    scenario: str
    split: Split
    model: str = Field(description="The version asked ('base' for the model without an adapter).")
    accuracy: float = Field(description="Share of the questions answered right, in [0, 1].")
    right: int
    total: int
    seconds: float
    items: list[ItemResult]


def evaluate_scenario(
    scenario: Scenario,
    split: Split,
    ask: Ask,
    *,
    model: str,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ScenarioEval:
    """Ask every phrasing of ``split`` (at most ``limit``) with ``ask`` and score the answers.

    Raises ``InvalidRequest`` when the split holds no questions.
    """
    questions = [(item, q) for item in scenario.items for q in item.phrasings(split)]
    if limit is not None:
        questions = questions[:limit]
    if not questions:
        raise InvalidRequest(f"{scenario.path} has no '{split}' questions", param="split")
    started = time.perf_counter()
    results: list[ItemResult] = []
    for done, (item, question) in enumerate(questions, start=1):
        answer = ask(question)
        results.append(
            ItemResult(
                id=item.id,
                question=question,
                expected=item.expected,
                answer=answer,
                right=is_right(answer, item.expected),
            )
        )
        if progress is not None:
            progress(done, len(questions))
    right = sum(r.right for r in results)
    return ScenarioEval(
        scenario=scenario.path,
        split=split,
        model=model,
        accuracy=right / len(results),
        right=right,
        total=len(results),
        seconds=round(time.perf_counter() - started, 2),
        items=results,
    )


def engine_asker(
    engine: InferenceEngine,
    *,
    adapter: str | None,
    system_prompt: str | None,
    max_tokens: int = EVAL_MAX_TOKENS,
) -> Ask:
    """Ask through an engine as the assistant does: its system prompt, the question, greedy decoding."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0)

    def ask(question: str) -> str:
        messages = [ChatMessage("system", system_prompt)] if system_prompt else []
        messages.append(ChatMessage("user", question))
        return "".join(chunk.text for chunk in engine.stream_chat(messages, params, adapter=adapter))

    return ask


def holdout_of_version(
    scenario: Scenario, engine: InferenceEngine, version: str | None, *, system_prompt: str | None
) -> ScenarioEval:
    """The holdout phrasings of ``scenario`` asked of ``version`` (an adapter loaded in ``engine``;
    None for the base model) as the assistant asks them — the benchmarks' before and after."""
    return evaluate_scenario(
        scenario,
        "holdout",
        engine_asker(engine, adapter=version, system_prompt=system_prompt),
        model=version or BASE_VERSION,
    )
