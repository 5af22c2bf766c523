"""Every repository of the store on both backends: SQLite (WAL) and a real PostgreSQL server started
for the session (tests/support/postgres.py). What differs between them is what these tests pin:
time zones, JSON columns, NUL bytes in text, autoincrement ids, unique constraints that allow several
NULLs, ``rowcount`` of conditional updates, and, on PostgreSQL, writers of several processes (replicas)
that must take turns."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import StatementError

from genesys.errors import InvalidRequest
from genesys.runtime.store import (
    AdapterVersion,
    Annotation,
    Cycle,
    CycleInProgress,
    DatasetVersion,
    Feedback,
    IdeEvent,
    Interaction,
    Rollout,
    Store,
    TrainingProgress,
    TrainingRun,
    new_interaction_id,
    utcnow,
)

T0 = datetime(2026, 4, 1, 12, tzinfo=UTC)


def interaction(n: int, *, answer: str = "Use sorted(items).", **fields: Any) -> Interaction:
    values: dict[str, Any] = {
        "id": new_interaction_id("chat"),
        "conversation_id": f"conv-{n}",
        "request_messages": [{"role": "user", "content": f"question {n}", "meta": {"n": n, "ok": True}}],
        "answer": answer,
        "model_version": "base",
        "latency_ms": 10.0,
        "created_at": T0 + timedelta(seconds=n),
    }
    values.update(fields)
    return Interaction(**values)


def cycle(cycle_id: str, owner: str) -> Cycle:
    now = utcnow()
    return Cycle(
        id=cycle_id,
        trigger="test",
        requested_by="ana",
        reason="test",
        mode="policy",
        state="running",
        owner=owner,
        created_at=now,
        heartbeat_at=now,
    )


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released at once; each result, or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_json_time_zones_and_nul_bytes_round_trip(store_url: str) -> None:
    store = Store(store_url)
    nul = "before\x00after"
    first = interaction(1, answer=nul, context={"files": ["a.py"], "nested": {"x": [1, 2.5, None]}})
    store.interactions.record(first)
    stored = store.interactions.get(first.id)
    assert stored is not None
    assert stored.request_messages == first.request_messages and stored.context == first.context
    assert stored.created_at == T0 + timedelta(seconds=1) and stored.created_at.tzinfo is not None
    # SQLite keeps a NUL byte; PostgreSQL text cannot hold one, so it is stored as U+FFFD.
    assert stored.answer in (nul, "before\ufffdafter")
    feedback = store.feedback.upsert(Feedback(interaction_id=first.id, thumbs="down", correction=nul))
    assert feedback.correction in (nul, "before\ufffdafter")
    with pytest.raises(StatementError, match="naive datetime"):
        store.interactions.record(interaction(2, created_at=datetime(2026, 1, 1)))


def test_feedback_upsert_updates_one_row_per_signal(store_url: str) -> None:
    store = Store(store_url)
    item = interaction(1)
    store.interactions.record(item)
    store.feedback.upsert(Feedback(interaction_id=item.id, thumbs="down"))
    store.feedback.upsert(Feedback(interaction_id=item.id, correction="Use sorted(items, reverse=True)."))
    store.feedback.upsert(Feedback(interaction_id=item.id, source="implicit", signal="regenerate"))
    rows = store.feedback.for_interaction(item.id)
    assert [(r.source, r.signal, r.thumbs, r.correction) for r in rows] == [
        ("explicit", "user", "down", "Use sorted(items, reverse=True)."),
        ("implicit", "regenerate", None, None),
    ]
    assert store.feedback.counts() == {("explicit", "down"): 1, ("implicit", "none"): 1}


def test_feedback_from_two_replicas_at_once_makes_one_row(store_url: str) -> None:
    store = Store(store_url)
    item = interaction(1)
    store.interactions.record(item)
    replicas = [Store(store_url) for _ in range(4)]
    results = in_threads(
        4, lambda i: replicas[i].feedback.upsert(Feedback(interaction_id=item.id, rating=i + 1))
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert len(store.feedback.for_interaction(item.id)) == 1


def test_annotations_ide_events_and_datasets(store_url: str) -> None:
    store = Store(store_url)
    short, long = interaction(1, answer="ok"), interaction(2, answer="x" * 500)
    for item in (short, long):
        store.interactions.record(item)

    def note(item: Interaction, tier: str) -> Annotation:
        return Annotation(
            interaction_id=item.id,
            category="coding",
            topics=["python"],
            tags=["python"],
            quality_score=0.5,
            tier=tier,  # type: ignore[arg-type]
            analyzer_version="1",
        )

    store.annotations.put_many([note(short, "standard"), note(long, "premium")])
    store.annotations.put_many([note(short, "discarded")])  # replaces, does not duplicate
    assert [a.tier for a in store.annotations.list()] == ["premium", "discarded"]  # by analysis time
    assert [a.interaction_id for a in store.annotations.list(tier="discarded")] == [short.id]

    first = store.ide_events.add(
        IdeEvent(name="chatFeedback", schema_version="0.2.0", session_id="s1", interaction_id=short.id)
    )
    second = store.ide_events.add(IdeEvent(name="chatFeedback", schema_version="0.2.0", session_id="s1"))
    assert first.id is not None and second.id == first.id + 1
    assert store.ide_events.linked_in_session("s1") == [(short.id, short.conversation_id)]
    found = store.ide_events.candidate_interactions(
        endpoints=("chat",), since=T0, min_answer_chars=100, max_answer_chars=1000
    )
    assert [i.id for i in found] == [long.id]

    version = DatasetVersion(
        version="ds-1", config_hash="abc", manifest_path="/m.json", counts={"train": {"coding": 3}}
    )
    store.datasets.add(version)
    with pytest.raises(InvalidRequest, match="exists already"):
        store.datasets.add(version)
    assert store.datasets.get("ds-1").counts == {"train": {"coding": 3}}


def test_training_runs_end_once(store_url: str) -> None:
    runs = Store(store_url).training_runs
    runs.create(TrainingRun(id="run-1", output_dir="/tmp/run-1", spec={"epochs": 1}))
    assert runs.mark_running("run-1", pid=123, phase="loading")
    runs.add_progress("run-1", TrainingProgress(step=1, total_steps=4, loss=2.5))
    runs.add_progress("run-1", TrainingProgress(step=2, total_steps=4, eval_loss=2.0))
    assert runs.finish("run-1", "succeeded", metrics={"loss": 1.0})
    assert not runs.finish("run-1", "failed", error="late")
    assert not runs.request_cancel("run-1")
    run = runs.get("run-1")
    assert (run.state, run.step, run.loss, run.eval_loss, run.pid) == ("succeeded", 2, 2.5, 2.0, 123)
    assert [p.step for p in runs.progress("run-1")] == [1, 2]


def test_one_active_cycle_and_one_owner_across_stores(store_url: str) -> None:
    mine, theirs = Store(store_url), Store(store_url)
    mine.cycles.claim(cycle("cy-1", "a:1"))
    with pytest.raises(CycleInProgress):
        theirs.cycles.claim(cycle("cy-2", "b:2"))
    # Of two processes taking over the same cycle, one wins.
    assert mine.cycles.take_over("cy-1", owner="c:3", expected_owner="a:1")
    assert not theirs.cycles.take_over("cy-1", owner="d:4", expected_owner="a:1")
    assert [
        m.seq
        for m in (
            mine.cycles.add_message("cy-1", source="x", type="t", kind="note", text="hi", payload={"k": [1]})
            for _ in range(3)
        )
    ] == [0, 1, 2]
    mine.cycles.finish("cy-1", state="stopped", outcome="no_data", reason="nothing to learn")
    # The ended cycle released the slot (NULLs do not collide): the next claim succeeds, then another.
    theirs.cycles.claim(cycle("cy-2", "b:2"))
    theirs.cycles.finish("cy-2", state="stopped", outcome="no_data", reason="again")
    theirs.cycles.claim(cycle("cy-3", "b:2"))
    assert mine.cycles.active() is not None and mine.cycles.active().id == "cy-3"  # type: ignore[union-attr]
    assert mine.cycles.get("cy-1").resumes == 1


def test_rollouts_refuse_a_second_active_one_and_a_stale_change(store_url: str) -> None:
    store = Store(store_url)
    for version in ("v1", "v2"):
        store.adapters.register(
            AdapterVersion(version=version, path=f"/a/{version}", base_model="m"), actor="t", reason="r"
        )
    rollout = Rollout(
        id="ro-1",
        candidate="v1",
        baseline="base",
        state="running",
        approval="auto",
        stages=[0.2, 1.0],
        stage_seconds=[60.0, 60.0],
        created_by="deploy",
        reason="test",
        created_at=T0,
        updated_at=T0,
    )
    store.rollouts.create(rollout, actor="deploy", reason="start")
    with pytest.raises(InvalidRequest, match="still running"):
        store.rollouts.create(
            rollout.model_copy(update={"id": "ro-2", "candidate": "v2"}), actor="x", reason="y"
        )
    change = {"expected": {"running"}, "action": "hold", "actor": "deploy", "reason": "r", "at": T0}
    held = Store(store_url).rollouts.change("ro-1", updates={"state": "held"}, **change)
    assert held.state == "held"
    with pytest.raises(InvalidRequest, match="is held"):
        store.rollouts.change("ro-1", updates={"state": "held"}, **change)
    assert [e.action for e in store.rollouts.events("ro-1")] == ["start", "hold"]


# -- PostgreSQL: several replicas writing at once --------------------------------------------------------


def test_replicas_creating_the_tables_at_once_do_not_collide(postgres_server: Any) -> None:
    url = postgres_server.create_database("fresh")
    results = in_threads(4, lambda _: Store(url))
    assert not [r for r in results if isinstance(r, Exception)], results


def test_replicas_changing_one_rollout_at_once_take_turns(postgres_server: Any) -> None:
    url = postgres_server.create_database("race")
    store = Store(url)
    store.adapters.register(AdapterVersion(version="v1", path="/a/v1", base_model="m"), actor="t", reason="r")
    store.rollouts.create(
        Rollout(
            id="ro-1",
            candidate="v1",
            baseline="base",
            state="running",
            approval="auto",
            stages=[0.2, 1.0],
            stage_seconds=[60.0, 60.0],
            created_by="deploy",
            reason="test",
            created_at=T0,
            updated_at=T0,
        ),
        actor="deploy",
        reason="start",
    )
    # Each replica has its own store (its own connections and in-process lock): only the database
    # can make them take turns. Each expects "running"; exactly one may move it.
    replicas = [Store(url) for _ in range(6)]
    results = in_threads(
        6,
        lambda i: replicas[i].rollouts.change(
            "ro-1",
            expected={"running"},
            action="hold",
            actor=f"replica-{i}",
            reason="tick",
            at=T0,
            updates={"state": "held"},
        ),
    )
    won = [r for r in results if isinstance(r, Rollout)]
    refused = [r for r in results if isinstance(r, InvalidRequest)]
    assert (len(won), len(refused)) == (1, 5), results
    assert [e.action for e in store.rollouts.events("ro-1")] == ["start", "hold"]
