"""An LLM judge: a model on an OpenAI-compatible server scores each answer 1-5 against its reference.

Off unless ``quality_gates.judge`` names a server and model. Scores are normalised to [0, 1]
(1 -> 0.0, 5 -> 1.0). The judge is asked at temperature 0 for one digit; the first digit 1-5 of its
reply is the score.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genesys.errors import ConfigError, EngineError
from genesys.runtime.settings import JudgeConfig

JUDGE_INSTRUCTIONS = """You grade the answers of a coding assistant.
You get a question, a reference answer that is known to be right, and the assistant's answer.
Score how well the answer agrees with the reference and answers the question:
5 = right and complete, 4 = right with small gaps, 3 = partly right, 2 = mostly wrong, 1 = wrong or
no answer. An answer that contradicts the reference is wrong even when it sounds plausible.
Reply with the score only: one digit from 1 to 5."""
_SCORE = re.compile(r"[1-5]")


@dataclass(frozen=True)
class JudgeRequest:
    prompt: str
    reference: str
    answer: str


def judge_answers(
    config: JudgeConfig,
    requests: Sequence[JudgeRequest],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Each answer's score in [0, 1]. Raises ``EngineError`` when the judge cannot be reached or
    replies without a score, ``ConfigError`` when its API key variable is unset."""
    from openai import OpenAI, OpenAIError

    api_key = "unused"
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env, "")
        if not api_key:
            raise ConfigError(f"the judge's API key variable {config.api_key_env} is not set")
    client = OpenAI(base_url=config.base_url, api_key=api_key, timeout=config.timeout_s, max_retries=1)
    scores: list[float] = []
    try:
        for index, request in enumerate(requests):
            reply = client.chat.completions.create(
                model=config.model,
                messages=[
                    {"role": "system", "content": JUDGE_INSTRUCTIONS},
                    {"role": "user", "content": _judge_prompt(request)},
                ],
                temperature=0,
                max_tokens=16,
            )
            text = (reply.choices[0].message.content or "") if reply.choices else ""
            found = _SCORE.search(text)
            if found is None:
                raise EngineError(f"the judge {config.model} replied without a score 1-5: {text[:80]!r}")
            scores.append((int(found.group()) - 1) / 4)
            if progress is not None:
                progress(index + 1, len(requests))
    except OpenAIError as exc:
        raise EngineError(f"the judge {config.model} at {config.base_url} failed: {exc}") from exc
    finally:
        client.close()
    return scores


def _judge_prompt(request: JudgeRequest) -> str:
    return (
        f"Question:\n{request.prompt}\n\nReference answer:\n{request.reference}\n\n"
        f"Assistant's answer:\n{request.answer or '(empty)'}\n\nScore (1-5):"
    )
