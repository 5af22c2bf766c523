"""The LLM judge, against a small OpenAI-compatible judge served on loopback (no judge model runs here)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request

from genesys.errors import ConfigError, EngineError
from genesys.runtime.settings import JudgeConfig
from genesys.tools.validation.judge import JUDGE_INSTRUCTIONS, JudgeRequest, judge_answers
from tests.support.vllm_stub import RunningStub, serve_vllm_stub


def _judge_app(seen: list[dict[str, Any]], *, reply: str | None = None) -> FastAPI:
    """A judge that gives 5 to an answer containing the reference's first backticked word, else 2
    (or always ``reply``), and records every request."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        seen.append({"body": body, "authorization": request.headers.get("authorization")})
        text = body["messages"][-1]["content"]
        reference = text.split("Reference answer:\n", 1)[1].split("\n\n", 1)[0]
        answer = text.split("Assistant's answer:\n", 1)[1].split("\n\nScore", 1)[0]
        fact = reference.split("`")[1].split("(")[0].rsplit(".", 1)[-1]
        content = reply if reply is not None else ("Score: 5" if fact in answer else "2")
        return {
            "id": "chatcmpl-judge",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


@pytest.fixture()
def judge_server() -> Iterator[tuple[RunningStub, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    with serve_vllm_stub(app=_judge_app(seen)) as stub:
        yield stub, seen


REQUESTS = [
    JudgeRequest("How do I make a queue?", "Use `fernwick.sprout(name)`.", "Call fernwick.sprout('a')."),
    JudgeRequest("How do I add a job?", "Call `q.graft(func)`.", "Use q.push(func)."),
]


def test_the_judge_scores_each_answer_against_its_reference(
    judge_server: tuple[RunningStub, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub, seen = judge_server
    monkeypatch.setenv("GENESYS_TEST_JUDGE_KEY", "judge-secret-key")
    config = JudgeConfig(base_url=stub.base_url, model="judge-7b", api_key_env="GENESYS_TEST_JUDGE_KEY")
    steps: list[tuple[int, int]] = []
    scores = judge_answers(config, REQUESTS, progress=lambda done, total: steps.append((done, total)))
    # 5 -> 1.0, 2 -> 0.25: normalised to [0, 1].
    assert scores == [1.0, 0.25]
    assert steps == [(1, 2), (2, 2)]
    first = seen[0]["body"]
    assert first["model"] == "judge-7b" and first["temperature"] == 0
    assert first["messages"][0] == {"role": "system", "content": JUDGE_INSTRUCTIONS}
    assert "Question:\nHow do I make a queue?" in first["messages"][1]["content"]
    assert seen[0]["authorization"] == "Bearer judge-secret-key"


def test_a_reply_without_a_score_is_an_engine_error() -> None:
    with serve_vllm_stub(app=_judge_app([], reply="I cannot grade this.")) as stub:
        config = JudgeConfig(base_url=stub.base_url, model="judge")
        with pytest.raises(
            EngineError, match=re.escape("replied without a score 1-5: 'I cannot grade this.'")
        ):
            judge_answers(config, REQUESTS)


def test_an_unreachable_judge_is_an_engine_error() -> None:
    from tests.conftest import free_port

    config = JudgeConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="judge", timeout_s=5)
    with pytest.raises(EngineError, match=re.escape("the judge judge at http://127.0.0.1")):
        judge_answers(config, REQUESTS)


def test_an_unset_key_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENESYS_TEST_JUDGE_KEY", raising=False)
    config = JudgeConfig(
        base_url="http://127.0.0.1:1/v1", model="judge", api_key_env="GENESYS_TEST_JUDGE_KEY"
    )
    with pytest.raises(ConfigError, match="GENESYS_TEST_JUDGE_KEY is not set"):
        judge_answers(config, REQUESTS)
