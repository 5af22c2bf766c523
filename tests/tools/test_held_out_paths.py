"""Which held-out rows a candidate is validated on: the test split, with a validation split too small
to have stopped training early."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genesys.tools.dataset_writer import split_dir
from genesys.tools.training.hyperparameters import MIN_STOPPING_ROWS
from genesys.tools.training_cycle import held_out_items, held_out_paths

VERSION = "v20260101-000000"


def _write(settings: Any, split: str, n: int) -> Path:
    path = split_dir(settings.data_dir, split, VERSION) / "sft.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": f"{split} q{i}"}, {"role": "assistant", "content": "a"}]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_small_validation_split_is_validated_on_beside_the_test_split(settings: Any) -> None:
    test = _write(settings, "test", 1)
    validation = _write(settings, "validation", 1)

    assert held_out_paths(settings, VERSION) == [test, validation]
    items = held_out_items(held_out_paths(settings, VERSION))
    assert [i.messages[-1]["content"] for i in items] == ["test q0", "validation q0"]
    assert [i.id for i in items] == ["test_set/sft:1", "validation_set/sft:1"]


def test_a_validation_split_large_enough_to_stop_on_stays_out(settings: Any) -> None:
    test = _write(settings, "test", 3)
    _write(settings, "validation", MIN_STOPPING_ROWS)

    assert held_out_paths(settings, VERSION) == [test]


def test_without_a_test_split_the_validation_split_is_used_and_without_both_nothing(settings: Any) -> None:
    assert held_out_paths(settings, VERSION) == []
    validation = _write(settings, "validation", MIN_STOPPING_ROWS + 2)
    assert held_out_paths(settings, VERSION) == [validation]
    assert len(held_out_items([validation])) == MIN_STOPPING_ROWS + 2
