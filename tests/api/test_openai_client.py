"""The API through the real `openai` client, against the real server and the embedded model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import LiveServer

READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read the contents of a file in the workspace.",
        "parameters": {
            "type": "object",
            "properties": {"filepath": {"type": "string"}},
            "required": ["filepath"],
        },
    },
}


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)


def test_models_lists_the_configured_name_and_versions(live_server: LiveServer) -> None:
    ids = [m.id for m in client(live_server).models.list().data]
    assert ids[0] == "genesys-local"
    assert "genesys-local@base" in ids


def test_chat_answers_and_the_interaction_is_stored(live_server: LiveServer) -> None:
    raw = client(live_server).chat.completions.with_raw_response.create(
        model="genesys-local",
        messages=[{"role": "user", "content": "What does the Python keyword `yield` do?"}],
        max_tokens=40,
        temperature=0,
    )
    reply = raw.parse()
    text = reply.choices[0].message.content
    assert text and text.strip()
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    interaction_id = raw.headers["x-genesys-interaction-id"]
    assert reply.id == interaction_id
    assert raw.headers["x-genesys-model-version"] == "base"

    stored = live_server.services.store.interactions.get(interaction_id)
    assert stored is not None
    assert stored.answer == text
    assert stored.request_messages[-1]["content"].startswith("What does the Python keyword")
    assert stored.model_version == "base" and stored.ab_arm == "production"
    assert stored.completion_tokens == reply.usage.completion_tokens
    assert stored.latency_ms > 0 and stored.status == "completed"
    assert stored.interaction_type == "explanation"
    raw_files = list((live_server.settings.data_dir / "raw" / "explanations").glob("*.jsonl"))
    assert raw_files and interaction_id in raw_files[0].read_text()


def test_streaming_with_usage_matches_the_stored_answer(live_server: LiveServer) -> None:
    stream = client(live_server).chat.completions.create(
        model="genesys-local",
        messages=[{"role": "user", "content": "Write a Python function that reverses a string."}],
        max_tokens=48,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    finish: str | None = None
    usage: Any = None
    ids = set()
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(ids) == 1
    assert finish in {"stop", "length"}
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    stored = live_server.services.store.interactions.get(ids.pop())
    assert stored is not None and stored.answer == "".join(pieces)
    assert stored.ttft_ms is not None and stored.ttft_ms <= stored.latency_ms


def test_max_tokens_and_stop_are_honoured(live_server: LiveServer) -> None:
    api = client(live_server)
    short = api.chat.completions.create(
        model="genesys-local",
        messages=[{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
        max_tokens=5,
        temperature=0,
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens <= 5
    free = api.chat.completions.create(
        model="genesys-local",
        messages=[{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
        max_tokens=60,
        temperature=0,
    )
    text = free.choices[0].message.content or ""
    assert "5" in text
    stopped = api.chat.completions.create(
        model="genesys-local",
        messages=[{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
        max_tokens=60,
        temperature=0,
        stop=["5"],
    )
    cut = stopped.choices[0].message.content or ""
    assert "5" not in cut
    assert text.startswith(cut.rstrip())


def test_temperature_zero_is_deterministic(live_server: LiveServer) -> None:
    api = client(live_server)
    ask = {"model": "genesys-local", "messages": [{"role": "user", "content": "Name a sorting algorithm."}]}
    first = api.chat.completions.create(**ask, max_tokens=24, temperature=0).choices[0].message.content
    second = api.chat.completions.create(**ask, max_tokens=24, temperature=0).choices[0].message.content
    assert first == second


def test_text_completion_and_fim(live_server: LiveServer) -> None:
    api = client(live_server)
    completion = api.completions.create(
        model="genesys-local", prompt="def add(a, b):\n    return", max_tokens=12, temperature=0
    )
    assert completion.choices[0].text.strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    with_suffix = api.completions.create(
        model="genesys-local",
        prompt="def add(a, b):\n",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=16,
        temperature=0,
    )
    assert with_suffix.choices[0].text
    stored = live_server.services.store.interactions.get(with_suffix.id)
    assert stored is not None and stored.endpoint == "fim"
    assert stored.context["suffix"] == "\n\nprint(add(1, 2))\n"

    # Mistral's FIM endpoint, streamed, as Continue's autocomplete calls it.
    with httpx.stream(
        "POST",
        f"{live_server.api}/fim/completions",
        json={
            "model": "genesys-local",
            "prompt": "def square(x):\n    ",
            "suffix": "\n",
            "max_tokens": 12,
            "stream": True,
        },
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-genesys-interaction-id"].startswith("cmpl-")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert "".join(deltas)


def test_streamed_text_completion(live_server: LiveServer) -> None:
    stream = client(live_server).completions.create(
        model="genesys-local",
        prompt="# A Python list of three colours\ncolours =",
        max_tokens=10,
        stream=True,
    )
    text = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
    assert text


def test_requests_with_tools_are_answered_with_text_or_tool_calls(live_server: LiveServer) -> None:
    api = client(live_server)
    messages: list[Any] = [
        {"role": "system", "content": "You are an agent in the user's IDE."},
        {"role": "user", "content": "Open the file main.py and tell me what it does."},
    ]
    reply = api.chat.completions.create(
        model="genesys-local", messages=messages, tools=[READ_FILE_TOOL], max_tokens=60, temperature=0
    )
    message = reply.choices[0].message
    assert message.content or message.tool_calls
    if message.tool_calls:
        assert reply.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls[0].function.name == "read_file"
        json.loads(message.tool_calls[0].function.arguments)
    stored = live_server.services.store.interactions.get(reply.id)
    assert stored is not None and stored.context["tools"][0]["function"]["name"] == "read_file"

    # A turn that carries a tool result (what Continue sends after running a tool) is served too.
    follow_up = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"filepath": "main.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "print('hello')"},
    ]
    second = api.chat.completions.create(
        model="genesys-local", messages=follow_up, tools=[READ_FILE_TOOL], max_tokens=40, temperature=0
    )
    assert second.choices[0].message.content or second.choices[0].message.tool_calls


@pytest.mark.parametrize("model", ["genesys-local@base", "base"])
def test_a_version_can_be_pinned(live_server: LiveServer, model: str) -> None:
    raw = client(live_server).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert raw.headers["x-genesys-model-version"] == "base"
    stored = live_server.services.store.interactions.get(raw.headers["x-genesys-interaction-id"])
    assert stored is not None and stored.ab_arm == "pinned"
