"""The interaction store on both backends (SQLite with WAL, PostgreSQL) and the seed's raw export."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from genesys.runtime.interaction_type import classify_interaction
from genesys.runtime.raw_export import RawExporter, export_raw
from genesys.runtime.store import Interaction, Store, new_interaction_id


def make(n: int, kind: str = "chat", text: str = "hello") -> Interaction:
    return Interaction(
        id=new_interaction_id("chat"),
        conversation_id=f"conv-{n % 3}",
        user="ana",
        request_messages=[{"role": "user", "content": f"{text} {n}"}],
        context={"tools": [], "files": ["src/app.py"], "system_prompt": "be brief"},
        answer=f"answer {n}",
        model_version="base",
        ab_arm="production",
        latency_ms=12.5,
        ttft_ms=3.0,
        prompt_tokens=10,
        completion_tokens=5,
        finish_reason="stop",
        interaction_type=kind,  # type: ignore[arg-type]
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
    )


def test_round_trip(store_url: str) -> None:
    store = Store(store_url).interactions
    items = [make(i) for i in range(5)]
    for item in items:
        store.record(item)
    assert store.count() == 5
    again = store.get(items[2].id)
    assert again is not None
    assert again.model_dump(exclude={"created_at", "completed_at"}) == items[2].model_dump(
        exclude={"created_at", "completed_at"}
    )
    assert [i.id for i in store.list(conversation_id="conv-1")] == [items[1].id, items[4].id]
    assert [i.id for i in store.list(limit=2, offset=3)] == [items[3].id, items[4].id]
    assert store.get("missing") is None
    # Datetimes come back aware, in UTC, to the microsecond, whatever the server's time zone.
    assert again.created_at == items[2].created_at and again.created_at.utcoffset() == timedelta(0)
    assert [i.id for i in store.list(since=items[3].created_at)] == [items[3].id, items[4].id]
    store.db.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    Store(f"sqlite:///{db}").interactions.record(make(1))
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_second_store_on_the_same_database_sees_committed_rows(store_url: str) -> None:
    url = store_url
    writer, reader = Store(url).interactions, Store(url).interactions
    item = make(1)
    writer.record(item)
    assert reader.get(item.id) is not None


def test_raw_export_layout(tmp_path: Path, store_url: str) -> None:
    store = Store(store_url).interactions
    exporter = RawExporter(tmp_path)
    kinds = ["chat", "code", "debug", "explanation"]
    for n, kind in enumerate(kinds * 2):
        item = make(n, kind)
        store.record(item)
        exporter.append(item)
    folders = {"conversations", "code_analysis", "debugging", "explanations"}
    assert {p.name for p in (tmp_path / "raw").iterdir()} == folders
    lines = (tmp_path / "raw" / "debugging" / "2026-01-01.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["interaction_type"] == "debug"
    before = {p: p.read_text() for p in (tmp_path / "raw").rglob("*.jsonl")}
    assert export_raw(store, tmp_path, batch=3) == 8
    assert {p: p.read_text() for p in (tmp_path / "raw").rglob("*.jsonl")} == before


def test_interaction_types() -> None:
    assert classify_interaction("Traceback (most recent call last): KeyError: 'x'") == "debug"
    assert classify_interaction("my test fails with TypeError") == "debug"
    assert classify_interaction("Explain how Python decorators work") == "explanation"
    assert classify_interaction("Why is the sky blue?") == "explanation"
    assert classify_interaction("Write a function that parses dates") == "code"
    assert classify_interaction("```py\nx = 1\n```") == "code"
    assert classify_interaction("good morning!") == "chat"
