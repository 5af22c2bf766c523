"""Scenario files: the shipped one is well formed and unknowable; bad files are named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesys.errors import InvalidRequest
from genesys.tools.scenario import is_right, load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"


def test_the_shipped_scenario() -> None:
    scenario = load_scenario(SCENARIO)
    assert len(scenario.items) >= 15
    assert scenario.topics == ["fernwick"]
    for item in scenario.items:
        assert len(item.prompts) == 3 and len(item.holdout) == 2
        assert set(item.prompts).isdisjoint(item.holdout)
        assert is_right(item.correction, item.expected), item.id  # the correction itself is right


def test_judging() -> None:
    assert is_right("Use FERNWICK.SPROUT('q')", ["sprout"])
    assert not is_right("Use fernwick.create()", ["sprout"])
    assert not is_right("sprout only", ["sprout", "graft"])


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", ":1: not JSON"),
        (
            '{"id": "a", "topic": "t", "category": "c", "prompts": [], "correction": "x", "expected": ["x"]}',
            "prompts",
        ),
        (
            '{"id": "a", "topic": "t", "category": "c", "prompts": ["p"], "correction": "x",'
            ' "expected": ["x"], "extra": 1}',
            "extra",
        ),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, fragment: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InvalidRequest, match=fragment):
        load_scenario(path)


def test_duplicates_and_empty(tmp_path: Path) -> None:
    row = '{"id": "a", "topic": "t", "category": "c", "prompts": ["p"], "correction": "x", "expected": ["x"]}'
    path = tmp_path / "s.jsonl"
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(InvalidRequest, match="duplicate"):
        load_scenario(path)
    path.write_text("\n")
    with pytest.raises(InvalidRequest, match="no scenario items"):
        load_scenario(path)
