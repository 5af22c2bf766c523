"""Replay: the serving model's own answers to general coding prompts, trained beside the corrections.

An adapter trained on a few dozen corrections alone forgets what it was not shown: measured on
SmolLM2-135M with 51 corrections about an invented library, the candidate answered 62% of the unseen
phrasings but also answered HumanEval prompts with calls into that library (HumanEval subset 0.50 ->
0.00), and the Validator rejected it. Rehearsal is the standard cure: mix in rows of what the model
should keep doing — here its own greedy answers, as served now, to general coding questions and
function stubs (``replay_prompts.json``; none is a HumanEval problem, and the Validator's guard stays an
independent check). The rows teach nothing new; they pull the adapter back towards the behaviour it had.

The answers are generated once per (serving version, prompts, system prompt, length) and cached under
``<data_dir>/processed/replay/``, so later cycles pay nothing. Chat prompts are asked under the
assistant's system prompt, as users ask them; function stubs as the guard asks code (one user turn, no
system prompt), so both ways the model is used keep their behaviour.

An answer cut off at ``max_tokens`` is not replayed: trained as a whole answer it would teach the
model to stop mid-sentence or mid-function (the end-of-turn token follows it). SmolLM2-135M ran 9 of
its 11 first chat answers into the 160-token limit (many of them loops); the next prompts of the pool
take their places, so a replay set holds ``count`` complete answers while the pool lasts.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from genesys.runtime.engines.base import ChatMessage, GenerationParams
from genesys.tools.validation.humaneval_guard import INSTRUCTION

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine

PROMPTS_FILE = Path(__file__).with_name("replay_prompts.json")
REPLAY_FILE = "replay.jsonl"
MIN_REPLAY_ROWS = 8

PromptKind = Literal["chat", "code"]


class ReplayPrompt(BaseModel):
    kind: PromptKind
    text: str


class ReplaySet(BaseModel):
    """Replay rows ready to train on: ``path`` holds them as chat JSONL, each with its own messages."""

    path: Path
    rows: int
    version: str = Field(description="The serving version whose answers these are ('base' for none).")
    cached: bool
    seconds: float
    key: str = Field(description="Hash of what the answers depend on; the cache file's name.")
    skipped: int = Field(0, description="Prompts whose answer was cut off (or empty), not replayed.")


def replay_prompts() -> list[ReplayPrompt]:
    """The prompt pool, chat and code prompts interleaved so that any prefix mixes both."""
    pool = json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))
    chat = [ReplayPrompt(kind="chat", text=text) for text in pool["chat"]]
    code = [ReplayPrompt(kind="code", text=text) for text in pool["code"]]
    mixed: list[ReplayPrompt] = []
    for index in range(max(len(chat), len(code))):
        mixed.extend(group[index] for group in (chat, code) if index < len(group))
    return mixed


def replay_count(n_train_rows: int, ratio: float, pool: int) -> int:
    """Rows to replay beside ``n_train_rows`` training rows: ``ratio`` of them, at least
    ``MIN_REPLAY_ROWS``, at most the pool; none when ``ratio`` is 0."""
    if ratio <= 0 or n_train_rows <= 0:
        return 0
    return min(pool, max(MIN_REPLAY_ROWS, math.ceil(ratio * n_train_rows)))


def request_messages(prompt: ReplayPrompt, system_prompt: str | None) -> list[ChatMessage]:
    """The conversation a prompt is asked in: chat under the system prompt, code as the guard asks."""
    if prompt.kind == "code":
        return [ChatMessage("user", f"{INSTRUCTION}\n```python\n{prompt.text}```")]
    system = [ChatMessage("system", system_prompt)] if system_prompt else []
    return [*system, ChatMessage("user", prompt.text)]


def build_replay_set(
    engine: InferenceEngine,
    cache_dir: Path,
    *,
    count: int,
    system_prompt: str | None,
    adapter: str | None = None,
    max_tokens: int = 160,
    prompts: list[ReplayPrompt] | None = None,
) -> ReplaySet:
    """``count`` replay prompts answered greedily by ``engine`` (with ``adapter``, the serving version,
    or the base model) within ``max_tokens``, as training rows: the pool's prompts in order (``prompts``,
    default ``replay_prompts()``), skipping those whose answer is cut off or empty. Cached in
    ``cache_dir``."""
    prompts = replay_prompts() if prompts is None else prompts
    key = _key(engine, prompts, system_prompt, adapter, max_tokens, count)
    path = cache_dir / f"{key}-{REPLAY_FILE}"
    version = adapter or "base"
    if path.is_file():
        rows = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return ReplaySet(path=path, rows=rows, version=version, cached=True, seconds=0.0, key=key)
    started = time.perf_counter()
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    lines: list[str] = []
    skipped = 0
    for prompt in prompts:
        if len(lines) == count:
            break
        messages = request_messages(prompt, system_prompt)
        chunks = list(engine.stream_chat(messages, params, adapter=adapter))
        answer = "".join(chunk.text for chunk in chunks).strip()
        if not answer or (chunks and chunks[-1].finish_reason == "length"):
            skipped += 1
            continue
        row = [{"role": m.role, "content": m.content} for m in messages]
        row.append({"role": "assistant", "content": answer})
        lines.append(json.dumps({"messages": row}, ensure_ascii=False))
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    partial.replace(path)
    seconds = round(time.perf_counter() - started, 2)
    return ReplaySet(
        path=path, rows=len(lines), version=version, cached=False, seconds=seconds, key=key, skipped=skipped
    )


def _key(
    engine: InferenceEngine,
    prompts: list[ReplayPrompt],
    system_prompt: str | None,
    adapter: str | None,
    max_tokens: int,
    count: int,
) -> str:
    info = engine.info()
    payload = json.dumps(
        {
            "engine": info.engine,
            "base_model": info.base_model,
            "adapter": adapter,
            "prompts": [p.model_dump() for p in prompts],
            "system_prompt": system_prompt,
            "max_tokens": max_tokens,
            "count": count,
            "complete_answers_only": True,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
