"""Tool calls rendered into prompts and parsed back from model text."""

from __future__ import annotations

import json

from genesys.runtime.chat_format import content_text, may_be_tool_call, parse_tool_calls, render_tools_prompt

TOOLS = [
    {
        "type": "function",
        "function": {"name": "read_file", "description": "Read a file.", "parameters": {"type": "object"}},
    }
]


def test_tagged_call_of_a_listed_tool() -> None:
    text, calls = parse_tool_calls(
        '<tool_call>{"name": "read_file", "arguments": {"filepath": "a.py"}}</tool_call>', TOOLS
    )
    assert text == ""
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "read_file"
    assert json.loads(calls[0]["function"]["arguments"]) == {"filepath": "a.py"}


def test_bare_json_and_unclosed_tag_are_calls_too() -> None:
    _, calls = parse_tool_calls('{"name": "read_file", "arguments": "{\\"filepath\\": \\"b\\"}"}', TOOLS)
    assert json.loads(calls[0]["function"]["arguments"]) == {"filepath": "b"}
    _, calls = parse_tool_calls('<tool_call>{"name": "read_file", "arguments": {}}', TOOLS)
    assert len(calls) == 1


def test_anything_else_stays_text() -> None:
    for text in ['{"name": "delete_everything"}', "<tool_call>{not json}</tool_call>", "Just an answer."]:
        assert parse_tool_calls(text, TOOLS) == (text, [])
    assert parse_tool_calls('<tool_call>{"name": "read_file"}</tool_call>', None)[1] == []


def test_prompt_lists_tools_and_prefix_detection() -> None:
    prompt = render_tools_prompt(TOOLS)
    assert "read_file" in prompt and "<tool_call>" in prompt
    assert may_be_tool_call("  <tool") and may_be_tool_call("{") and may_be_tool_call("")
    assert not may_be_tool_call("Sure, here is")


def test_content_parts() -> None:
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "b"},
    ]
    assert content_text(parts) == "a\nb"
    assert content_text(None) == ""
