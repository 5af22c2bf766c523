"""OpenAI chat messages and tools, turned into plain engine messages and back.

IDE agents (Continue's agent mode sends nine tools) expect OpenAI ``tool_calls`` in the reply. Small
local models have no native tool protocol, so the tool definitions are rendered into the system
prompt with one output convention (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``),
and the model's text is parsed back. Text that is not a valid call of a listed tool stays text:
the reply is never an error because the model wrote something unexpected.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.DOTALL)


def content_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or a list of parts (images dropped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def render_tool_call(name: str, arguments: Any) -> str:
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def render_tools_prompt(tools: list[dict[str, Any]]) -> str:
    """System-prompt text that lists the IDE's tools and how to call one."""
    lines = [
        "You can call these tools. To call one, answer with nothing but",
        '<tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>',
        "Otherwise answer normally.",
        "Tools:",
    ]
    for tool in tools:
        fn = tool.get("function", tool)
        params = json.dumps(fn.get("parameters", {}), separators=(",", ":"))
        lines.append(f"- {fn.get('name')}: {fn.get('description', '').strip()} Parameters: {params}")
    return "\n".join(lines)


def tool_names(tools: list[dict[str, Any]] | None) -> set[str]:
    return {str(t.get("function", t).get("name")) for t in tools or [] if t.get("function", t).get("name")}


def parse_tool_calls(text: str, tools: list[dict[str, Any]] | None) -> tuple[str, list[dict[str, Any]]]:
    """Split model output into (remaining text, OpenAI tool calls of listed tools)."""
    names = tool_names(tools)
    if not names:
        return text, []
    calls: list[dict[str, Any]] = []
    candidates = [m.group(1) for m in _TOOL_CALL_RE.finditer(text)]
    stripped = text.strip()
    if not candidates and stripped.startswith("{") and stripped.endswith("}"):
        candidates = [stripped]
    for raw in candidates:
        call = _as_call(raw, names)
        if call is not None:
            calls.append(call)
    if not calls:
        return text, []
    remaining = _TOOL_CALL_RE.sub("", text).strip()
    if remaining == stripped:
        remaining = ""
    return remaining, calls


def _as_call(raw: str, names: set[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("name") not in names:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = {"input": arguments}
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": data["name"], "arguments": json.dumps(arguments)},
    }


def may_be_tool_call(prefix: str) -> bool:
    """Whether output that starts with ``prefix`` could still turn out to be a tool call."""
    head = prefix.lstrip()
    if not head:
        return True
    return TOOL_CALL_OPEN.startswith(head[: len(TOOL_CALL_OPEN)]) or head.startswith(("{", TOOL_CALL_OPEN))
