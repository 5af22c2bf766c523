"""The Curator's paraphrases: generic, deterministic rewrites of corrected questions, train split only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from genesys.tools.curation_examples import Example
from genesys.tools.dataset_writer import plan_files
from genesys.tools.paraphrase import paraphrase_question, questions_from_answer


def test_rewrites_are_distinct_new_and_deterministic() -> None:
    question = "In the acme library, how do I create a new job queue?"
    avoid = {"What acme function creates a job queue?"}
    rewrites = paraphrase_question(question, 4, avoid=avoid)

    assert len(rewrites) == 4
    assert rewrites == paraphrase_question(question, 4, avoid=avoid)
    keys = {r.rstrip("?.").casefold() for r in rewrites}
    assert len(keys) == 4
    assert question.rstrip("?").casefold() not in keys
    # The library stays named in every rewrite, and the rules differ from one rewrite to the next.
    assert all("acme" in r for r in rewrites)
    assert "How do I create a new job queue in acme?" in rewrites
    assert any("build" in r or "fresh" in r or "task" in r for r in rewrites)


def test_questions_with_few_rules_still_get_rewrites_and_nothing_is_invented() -> None:
    assert paraphrase_question("Which port does the dashboard use?", 2) == [
        "Tell me which port does the dashboard use.",
        "Do you know which port does the dashboard use?",
    ]
    assert paraphrase_question("", 3) == []
    assert paraphrase_question("How do I list jobs?", 0) == []


def test_a_correction_that_says_what_it_does_gives_its_question() -> None:
    assert questions_from_answer("Start an acme worker with `acme.run(q)`; from the shell: `acme run`.") == [
        "How do I start an acme worker?"
    ]
    assert questions_from_answer("To add a job to an acme queue call `q.put(f)`; it returns an id.") == [
        "How do I add a job to an acme queue?"
    ]
    assert questions_from_answer("Call `q.stats()` to get acme queue statistics, with pending jobs.") == [
        "How do I get acme queue statistics?"
    ]
    assert questions_from_answer("In acme you create a queue with `acme.make(name)`.") == [
        "How do I create a queue in acme?"
    ]
    # Statements, and clauses too short to be a question, give none.
    assert questions_from_answer("By default acme stores jobs in sqlite.") == []
    assert questions_from_answer("Pass `retries=3` to `q.put`.") == []
    # It comes first among the rewrites, and callers extend `avoid` so a fact's next example differs.
    answer = "Start an acme worker with `acme.run(q)`."
    assert (
        paraphrase_question("How can I launch acme workers?", 2, answer=answer)[0]
        == "How do I start an acme worker?"
    )


def _example(n: int, *, corrected: bool) -> Example:
    return Example(
        interaction_id=f"i{n}",
        conversation_id=f"c{n}",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        category="coding",
        tier="premium",
        quality_score=0.9,
        analyzer_version="analyst-test",
        prompt=[
            {"role": "system", "content": "IDE rules"},
            {"role": "user", "content": f"How do I create queue number {n}?"},
        ],
        target=f"Call make_queue({n}).",
        target_source="correction" if corrected else "answer",
        answer="wrong" if corrected else None,
    )


def _rows(files: Any, key: str) -> list[dict[str, Any]]:
    planned = next(f for f in files.files if f.key == key)
    return [json.loads(line) for line in planned.data.decode().splitlines()]


def test_only_corrected_training_rows_are_enriched() -> None:
    examples = [_example(0, corrected=True), _example(1, corrected=False), _example(2, corrected=True)]
    assignment: dict[str, Any] = {"c0": "train", "c1": "train", "c2": "test"}
    files = plan_files(curated=examples, tagged=[], final=examples, assignment=assignment, paraphrases=2)

    train = _rows(files, "train/sft.jsonl")
    assert len(train) == 2 + 2  # two originals, two rewrites of the corrected one
    rewrites = [r for r in train[2:]]
    for row in rewrites:
        # History (the IDE's system prompt) kept, the question rewritten, the correction the answer.
        assert row["messages"][0] == {"role": "system", "content": "IDE rules"}
        assert row["messages"][1]["content"] != "How do I create queue number 0?"
        assert "queue number 0" in row["messages"][1]["content"]
        assert row["messages"][2] == {"role": "assistant", "content": "Call make_queue(0)."}
    # No rewrite of a test question anywhere, and none in the test split.
    assert len(_rows(files, "test/sft.jsonl")) == 1
    assert not any("number 2" in r["messages"][1]["content"] for r in train)
    # Without paraphrases, the files are what they were.
    plain = plan_files(curated=examples, tagged=[], final=examples, assignment=assignment)
    assert len(_rows(plain, "train/sft.jsonl")) == 2
