"""Held-out items: a prompt, the reference answer, and the facts a right answer must contain.

They come from a curated test set (chat JSONL, the last assistant message is the reference) or from a
scenario file (each phrasing of a split, with the item's correction as the reference and its
``expected`` strings as the facts).
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genesys.errors import InvalidRequest
from genesys.tools.scenario import Scenario

_ROLES = ("system", "user", "assistant")
_SFT_FILE = "sft.jsonl"
_CODE_SPAN = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)|`([^`\n]+)`", re.S)
# A call: a dotted name right before "(" (not "Protocol (HTTP)"): the called name is its last part.
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\(")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Names that any Python answer may contain: they tell nothing about the fact being asked.
_COMMON_NAMES = frozenset(keyword.kwlist) | {
    "print",
    "len",
    "str",
    "int",
    "list",
    "dict",
    "self",
    "return",
    "name",
    "value",
    "result",
    "example",
}
# Shorter names (`f(x)`, `q`) are in most answers by chance.
_MIN_NAME = 3
_MIN_WORD = 4


class HeldOutItem(BaseModel):
    """One held-out prompt and its reference answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    messages: list[dict[str, str]] = Field(
        min_length=1, description="The prompt as chat messages; the last one is the user's."
    )
    reference: str = Field(min_length=1, description="The right answer.")
    expected: list[str] = Field(
        default_factory=list,
        description="Facts a right answer contains (case-insensitive); empty: derived from the reference.",
    )

    @field_validator("messages")
    @classmethod
    def _chat_messages(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        messages = []
        for message in value:
            if message.get("role") not in _ROLES or "content" not in message:
                raise ValueError(f"each message has a role among {', '.join(_ROLES)} and a content")
            if not message["content"].strip():
                raise ValueError(f"a {message['role']} message has no text")
            messages.append({"role": message["role"], "content": message["content"]})
        if messages[-1]["role"] != "user":
            raise ValueError("the last message of the prompt must be the user's")
        return messages

    @field_validator("reference")
    @classmethod
    def _reference_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the reference is empty")
        return value

    @property
    def prompt(self) -> str:
        """The last user message: what the item asks."""
        return self.messages[-1]["content"]

    def facts(self) -> list[str]:
        """``expected``, or the facts ``required_facts`` derives from the reference."""
        return list(self.expected) or required_facts(self.reference, self.prompt)


def required_facts(reference: str, prompt: str) -> list[str]:
    """The fact a right answer must contain, derived from the reference: one string, or none.

    Code spans (inline `` `...` `` and fenced blocks) are where a reference states the fact, and what
    the prompt already names proves nothing, so the first rule that finds a name the prompt does not
    contain (as a word, ignoring case) wins:

    1. the name called in the first code span that calls one: ``fernwick.sprout(name)`` -> ``sprout``
       (the last part of a dotted call);
    2. the longest identifier of any code span (first on ties);
    3. the name called in the plain text;
    4. the longest word of the reference (at least 4 letters).

    Names shorter than 3 characters, keywords and names every Python answer has (``print``,
    ``self``, ``return``, ...) never count.
    Returns ``[]`` when nothing qualifies; such an item is not scored by the reference pass rate.
    """
    spans = [fenced or inline for fenced, inline in _CODE_SPAN.findall(reference)]
    prose = _CODE_SPAN.sub(" ", reference)

    def new(name: str) -> bool:
        return (
            len(name) >= _MIN_NAME
            and name.lower() not in _COMMON_NAMES
            and not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", prompt, re.I)
        )

    for span in spans:
        called = [m.group(1).rsplit(".", 1)[-1] for m in _CALL.finditer(span)]
        found = [name for name in called if new(name)]
        if found:
            return [found[0]]
    identifiers = [name for span in spans for name in _IDENTIFIER.findall(span) if new(name)]
    if identifiers:
        return [max(identifiers, key=len)]
    called = [m.group(1).rsplit(".", 1)[-1] for m in _CALL.finditer(prose)]
    found = [name for name in called if new(name)]
    if found:
        return [found[0]]
    words = [word for word in _WORD.findall(reference) if len(word) >= _MIN_WORD and new(word)]
    return [max(words, key=len)] if words else []


def held_out_from_scenario(scenario: Scenario, split: Literal["prompts", "holdout"]) -> list[HeldOutItem]:
    """One item per phrasing of ``split``: the item's correction is the reference, its ``expected``
    strings the facts. Ids are ``<item id>/<split>/<n>``."""
    return [
        HeldOutItem(
            id=f"{item.id}/{split}/{number}",
            messages=[{"role": "user", "content": phrasing}],
            reference=item.correction,
            expected=list(item.expected),
        )
        for item in scenario.items
        for number, phrasing in enumerate(item.phrasings(split), start=1)
    ]


def held_out_from_chat_jsonl(path: Path) -> list[HeldOutItem]:
    """Items of a chat JSONL test set: ``{"messages": [...]}`` rows whose last message is the
    assistant's reference; the messages before it are the prompt. ``path`` is a file or a directory
    (its ``sft.jsonl`` when it has one, else all its ``*.jsonl``). Ids are ``<file stem>:<line>``.

    Raises ``InvalidRequest`` for a missing path, no rows, or a malformed row (naming file and line).
    """
    path = Path(path)
    if path.is_dir():
        files = [path / _SFT_FILE] if (path / _SFT_FILE).is_file() else sorted(path.glob("*.jsonl"))
        if not files:
            raise InvalidRequest(f"no .jsonl files in {path}", param="held_out")
    elif path.is_file():
        files = [path]
    else:
        raise InvalidRequest(f"held-out set not found: {path}", param="held_out")
    items: list[HeldOutItem] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{where}: not JSON: {exc.msg}", param="held_out") from exc
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list) or not messages:
                raise InvalidRequest(f"{where}: expected a row with a list of messages", param="held_out")
            last = messages[-1]
            if not isinstance(last, dict) or last.get("role") != "assistant":
                raise InvalidRequest(f"{where}: the last message must be the assistant's", param="held_out")
            try:
                items.append(
                    HeldOutItem(
                        id=f"{file.stem}:{number}", messages=messages[:-1], reference=last.get("content")
                    )
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise InvalidRequest(f"{where}: {field}: {first['msg']}", param="held_out") from exc
    if not items:
        raise InvalidRequest(f"{path} holds no rows", param="held_out")
    return items
