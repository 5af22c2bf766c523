"""Scenario files: one fact or skill a line, used by ``simulate`` (as users) and ``eval`` (as a test).

Format (JSONL): ``{"id", "topic", "category", "prompts": [...], "holdout": [...], "correction": "...",
"expected": [...]}``. An answer is right when it contains every string of ``expected``
(case-insensitive). ``holdout`` phrasings are never asked during simulation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genesys.errors import InvalidRequest

Split = Literal["prompts", "holdout"]


class ScenarioItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    category: str = Field(min_length=1)
    prompts: list[str] = Field(min_length=1)
    holdout: list[str] = Field(default_factory=list)
    correction: str = Field(min_length=1)
    expected: list[str] = Field(min_length=1)

    @field_validator("prompts", "holdout", "expected")
    @classmethod
    def _non_empty_strings(cls, value: list[str]) -> list[str]:
        if any(not s.strip() for s in value):
            raise ValueError("empty strings are not allowed")
        return value

    def phrasings(self, split: Split) -> list[str]:
        return self.prompts if split == "prompts" else self.holdout


class Scenario(BaseModel):
    path: str
    items: list[ScenarioItem]

    @property
    def topics(self) -> list[str]:
        return sorted({item.topic for item in self.items})


def is_right(answer: str, expected: list[str]) -> bool:
    """Whether ``answer`` contains every expected string, ignoring case."""
    text = answer.casefold()
    return all(e.casefold() in text for e in expected)


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raises ``InvalidRequest`` naming the line at fault."""
    if not path.is_file():
        raise InvalidRequest(f"scenario file not found: {path}")
    items: list[ScenarioItem] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = ScenarioItem.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{number}: not JSON: {exc.msg}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            raise InvalidRequest(f"{path}:{number}: {where}: {first['msg']}") from exc
        if item.id in seen:
            raise InvalidRequest(f"{path}:{number}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise InvalidRequest(f"{path} holds no scenario items")
    return Scenario(path=str(path), items=items)
