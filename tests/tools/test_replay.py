"""Replay rows: production's own answers to general prompts, cached, in the two ways it is asked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from genesys.tools.training.replay import (
    MIN_REPLAY_ROWS,
    ReplayPrompt,
    build_replay_set,
    replay_count,
    replay_prompts,
    request_messages,
)
from genesys.tools.validation.humaneval_guard import INSTRUCTION, _all_problems

DEF = re.compile(r"def (\w+)\(")


def test_the_count_follows_the_ratio_within_bounds() -> None:
    assert replay_count(110, 0.2, pool=40) == 22
    assert replay_count(10, 0.2, pool=40) == MIN_REPLAY_ROWS
    assert replay_count(1000, 0.2, pool=40) == 40
    assert replay_count(110, 0.0, pool=40) == 0


def test_the_pool_mixes_chat_and_code_and_holds_no_humaneval_problem() -> None:
    prompts = replay_prompts()
    assert [p.kind for p in prompts[:4]] == ["chat", "code", "chat", "code"]
    assert len({p.text for p in prompts}) == len(prompts) >= 40
    # The guard stays an independent check: no stub is (or starts like) a HumanEval problem.
    humaneval = {name for problem in _all_problems().values() for name in DEF.findall(problem.prompt)}
    stubs = {name for p in prompts if p.kind == "code" for name in DEF.findall(p.text)}
    assert len(stubs) == 20 and not stubs & humaneval


def test_chat_is_asked_under_the_system_prompt_and_code_as_the_guard_asks() -> None:
    chat = request_messages(ReplayPrompt(kind="chat", text="Reverse a string?"), "Be brief.")
    code = request_messages(ReplayPrompt(kind="code", text="def f(x):\n"), "Be brief.")

    assert [(m.role, m.content) for m in chat] == [("system", "Be brief."), ("user", "Reverse a string?")]
    assert [m.role for m in code] == ["user"] and code[0].content.startswith(INSTRUCTION)


def test_answers_are_generated_once_and_cached(llama_engine: Any, tmp_path: Path) -> None:
    # Short answers, so that neither is cut off at the limit (those are skipped, see below).
    prompts = [
        ReplayPrompt(kind="chat", text="What is 2 + 2? Answer with the number only."),
        ReplayPrompt(kind="code", text='def double(x: int) -> int:\n    """Return twice x."""\n'),
    ]

    def build(system_prompt: str) -> Any:
        return build_replay_set(
            llama_engine, tmp_path, count=2, system_prompt=system_prompt, max_tokens=120, prompts=prompts
        )

    first = build("You help with code.")
    assert (first.rows, first.skipped, first.cached, first.version) == (2, 0, False, "base")
    rows = [json.loads(line)["messages"] for line in first.path.read_text().splitlines()]
    assert [m["role"] for m in rows[0]] == ["system", "user", "assistant"]
    assert [m["role"] for m in rows[1]] == ["user", "assistant"]
    assert all(row[-1]["content"].strip() for row in rows)

    again = build("You help with code.")
    assert again.cached and again.path == first.path and again.seconds == 0.0
    # Anything the answers depend on makes a new set.
    other = build("Other prompt.")
    assert not other.cached and other.path != first.path


def test_answers_cut_off_at_the_limit_are_not_replayed_and_others_take_their_place(
    llama_engine: Any, tmp_path: Path
) -> None:
    # Trained as a whole answer, a cut-off one would teach the model to stop mid-sentence.
    long_ = ReplayPrompt(kind="chat", text="Explain in detail how Python's garbage collector works.")
    short = [
        ReplayPrompt(kind="chat", text="What is 2 + 2? Answer with the number only."),
        ReplayPrompt(kind="chat", text="Reply with one word: what color is the sky?"),
    ]
    replay = build_replay_set(
        llama_engine, tmp_path, count=2, system_prompt=None, max_tokens=24, prompts=[long_, *short]
    )

    assert (replay.rows, replay.skipped) == (2, 1)
    asked = [json.loads(line)["messages"][0]["content"] for line in replay.path.read_text().splitlines()]
    assert asked == [p.text for p in short]
    none_complete = build_replay_set(
        llama_engine, tmp_path, count=2, system_prompt=None, max_tokens=24, prompts=[long_]
    )
    assert (none_complete.rows, none_complete.skipped) == (0, 1)
