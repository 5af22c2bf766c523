"""Held-out items for validation: the required-facts rule and the two loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genesys.errors import InvalidRequest
from genesys.tools.scenario import load_scenario
from genesys.tools.validation import (
    HeldOutItem,
    held_out_from_chat_jsonl,
    held_out_from_scenario,
    required_facts,
)

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"


@pytest.mark.parametrize(
    ("reference", "prompt", "facts"),
    [
        # 1. the name called in the first code span: the last part of a dotted call
        (
            'In fernwick you create a task queue with `fernwick.sprout(name)`, e.g. `fernwick.sprout("a")`.',
            "How do I create a fernwick task queue?",
            ["sprout"],
        ),
        ("Call `q.graft(func, *args)`; it returns the job id.", "How do I add a job?", ["graft"]),
        # ... unless the prompt names it already: the next span's call
        (
            "Use `functools.lru_cache(maxsize=None)` or `functools.cache(fn)`.",
            "What does functools.lru_cache do?",
            ["cache"],
        ),
        # a fenced block is a code span too
        ("Like this:\n```python\napp = createApp(App)\napp.mount('#app')\n```", "Vue 3 app?", ["createApp"]),
        # 2. no call the prompt lacks: the longest identifier of a code span (first on ties)
        ("Set `max_retries` in `ClientConfig`.", "How do I retry?", ["ClientConfig"]),
        ("Run `fernwick tend emails` in a shell.", "How do I run fernwick?", ["emails"]),
        # 3. no code span: a call named in the plain text
        ("You can call sorted(items, key=len) for that.", "How do I order a list?", ["sorted"]),
        # 4. nothing else: the longest word of the reference the prompt does not contain
        ("A generator is lazy: it yields values one at a time.", "What is a generator?", ["yields"]),
        # a parenthesis after a space is prose, not a call; names under 3 characters never count
        ("It is Hypertext Transfer Protocol (HTTP).", "What does HTTP stand for?", ["Hypertext"]),
        ("`f(x)` or `ab(y)`.", "How?", []),
        # keywords and names every answer has never count; nothing left -> no fact
        ("`print(x)`", "How do I print x?", []),
    ],
)
def test_required_facts_rules(reference: str, prompt: str, facts: list[str]) -> None:
    assert required_facts(reference, prompt) == facts


def test_required_facts_ignores_case_and_whole_words_of_the_prompt() -> None:
    # "Sprout" in the prompt hides `sprout(...)`; "sprouting" would not.
    assert required_facts("Use `fernwick.sprout(name)`.", "Is Sprout the call?") == ["fernwick"]
    assert required_facts("Use `fernwick.sprout(name)`.", "Is sprouting allowed in fernwick?") == ["sprout"]


def test_an_item_uses_its_expected_facts_or_derives_them() -> None:
    given = HeldOutItem(
        id="a", messages=[{"role": "user", "content": "q?"}], reference="Use `x.go()`.", expected=["go"]
    )
    derived = HeldOutItem(id="b", messages=[{"role": "user", "content": "q?"}], reference="Use `x.run()`.")
    assert given.facts() == ["go"]
    assert derived.facts() == ["run"]
    assert derived.prompt == "q?"
    # Other message keys (a name, an id) are dropped: the engine reads role and content.
    named = HeldOutItem(id="c", messages=[{"role": "user", "content": "q?", "name": "ana"}], reference="r")
    assert named.messages == [{"role": "user", "content": "q?"}]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"role": "assistant", "content": "hi"}], "last message of the prompt must be the user's"),
        ([{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}], "a role among"),
        ([{"role": "user"}], "and a content"),
        ([{"role": "user", "content": "  "}], "has no text"),
    ],
)
def test_malformed_items_are_refused(messages: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HeldOutItem(id="x", messages=messages, reference="ref")


def test_scenario_items_take_the_correction_and_expected() -> None:
    scenario = load_scenario(SCENARIO)
    holdout = held_out_from_scenario(scenario, "holdout")
    prompts = held_out_from_scenario(scenario, "prompts")
    assert len(holdout) == sum(len(item.holdout) for item in scenario.items)
    assert len(prompts) == sum(len(item.prompts) for item in scenario.items)
    first = holdout[0]
    assert first.id == "create-queue/holdout/1"
    assert first.messages == [{"role": "user", "content": scenario.items[0].holdout[0]}]
    assert first.reference == scenario.items[0].correction
    assert first.facts() == ["sprout"]


def _write_rows(path: Path, rows: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _chat(question: str, answer: str, system: str | None = None) -> dict[str, object]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def test_chat_jsonl_test_sets_from_a_file_or_a_dataset_directory(tmp_path: Path) -> None:
    version = tmp_path / "test_set" / "ds-1"
    _write_rows(
        version / "sft.jsonl",
        [
            _chat("How do I make a queue?", "Use `fernwick.sprout(name)`.", system="Be brief."),
            _chat("And a job?", "Call `q.graft(f)`."),
        ],
    )
    _write_rows(version / "kto.jsonl", [{"prompt": [], "completion": [], "label": True}])
    items = held_out_from_chat_jsonl(version)
    assert [item.id for item in items] == ["sft:1", "sft:2"]
    assert items[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I make a queue?"},
    ]
    assert items[0].reference == "Use `fernwick.sprout(name)`."
    assert [item.facts() for item in items] == [["sprout"], ["graft"]]
    assert [item.id for item in held_out_from_chat_jsonl(version / "sft.jsonl")] == ["sft:1", "sft:2"]

    # A directory without sft.jsonl: every *.jsonl, sorted.
    loose = tmp_path / "loose"
    _write_rows(loose / "b.jsonl", [_chat("q2", "a2")])
    _write_rows(loose / "a.jsonl", [_chat("q1", "a1")])
    assert [item.id for item in held_out_from_chat_jsonl(loose)] == ["a:1", "b:1"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["not json"], "not JSON"),
        ([{"prompt": "x"}], "expected a row with a list of messages"),
        ([{"messages": [{"role": "user", "content": "q"}]}], "last message must be the assistant's"),
        ([{"messages": [{"role": "assistant", "content": "a"}]}], "messages: List should have at least 1"),
        (
            [{"messages": [{"role": "assistant", "content": "x"}, {"role": "assistant", "content": "a"}]}],
            "last message of the prompt must be the user's",
        ),
        ([], "holds no rows"),
    ],
)
def test_malformed_test_sets_name_the_file_and_line(tmp_path: Path, rows: list[object], message: str) -> None:
    path = tmp_path / "set.jsonl"
    if rows and rows[0] == "not json":
        path.write_text("not json\n", encoding="utf-8")
    else:
        _write_rows(path, rows)
    with pytest.raises(InvalidRequest, match=message) as caught:
        held_out_from_chat_jsonl(path)
    if rows:
        assert f"{path}:1" in str(caught.value)


def test_missing_test_sets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="not found"):
        held_out_from_chat_jsonl(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match=r"no \.jsonl files"):
        held_out_from_chat_jsonl(tmp_path / "empty")
