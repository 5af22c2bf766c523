"""A focused dataset for a knowledge gap, built offline from indexed docs: rows HF ``datasets`` loads,
secrets scrubbed, and a manifest that rebuilds it byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from genesys.errors import InvalidRequest
from genesys.runtime.settings import Settings
from genesys.runtime.store import Store
from genesys.runtime.vectors import VectorStore
from genesys.tools.docs_dataset import (
    DocsDatasetRequest,
    build_docs_dataset,
    questions,
    read_docs_manifest,
    rebuild_docs_dataset,
    request_for_gap,
)
from genesys.tools.docs_index import add_docs
from genesys.tools.gaps import GapExample, KnowledgeGap

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs" / "fernwick"
SPLIT_DIRS = {"train": "train_set", "validation": "validation_set", "test": "test_set"}


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(DOCS, target)
    return target


@pytest.fixture()
def indexed(vectors: VectorStore, docs: Path) -> VectorStore:
    add_docs(vectors, docs)
    return vectors


def fernwick_gap() -> KnowledgeGap:
    examples = [
        GapExample(
            interaction_id="chatcmpl-1",
            prompt="In fernwick, how do I run jobs synchronously in tests?",
            answer="Use fernwick.sync().",
            correction="Wrap the code in `with fernwick.greenhouse():` and jobs run synchronously.",
        ),
        GapExample(
            interaction_id="chatcmpl-2",
            prompt="How do I schedule a periodic fernwick job?",
            answer="Use cron.",
            correction='Use the `@fernwick.season("every 1h")` decorator.',
        ),
    ]
    return KnowledgeGap(
        topic="fernwick",
        corrections=2,
        with_correction_text=2,
        interactions=3,
        confirmed=0,
        correction_rate=0.6667,
        categories={"coding": 2},
        related_topics=[],
        key_terms=["fernwick.greenhouse", "fernwick.season"],
        examples=examples,
        suggested_focus="",
    )


def version_dir(settings: Settings, split: str, version: str) -> Path:
    return settings.data_dir / "training" / SPLIT_DIRS[split] / version


def test_request_for_gap_asks_with_the_gaps_questions_corrections_and_terms() -> None:
    request = request_for_gap(fernwick_gap(), max_chunks=5)
    assert request.topic == "fernwick" and request.max_chunks == 5
    assert request.queries == [
        "In fernwick, how do I run jobs synchronously in tests?",
        "How do I schedule a periodic fernwick job?",
        "Wrap the code in `with fernwick.greenhouse():` and jobs run synchronously.",
        'Use the `@fernwick.season("every 1h")` decorator.',
        "fernwick fernwick.greenhouse fernwick.season",
    ]


@pytest.mark.parametrize(
    ("title", "part", "expected"),
    [
        ("`q.census()`", 0, ["In fernwick, what does `q.census()` do?", "Explain `q.census()` in fernwick."]),
        (
            "Creating a queue",
            0,
            [
                "What does the fernwick documentation say about creating a queue?",
                "Explain creating a queue in fernwick.",
            ],
        ),
        (
            "API keys",
            0,
            ["What does the fernwick documentation say about API keys?", "Explain API keys in fernwick."],
        ),
        (
            "Fernwick API reference",
            0,
            [
                "What does the documentation say about fernwick API reference?",
                "Explain fernwick API reference.",
            ],
        ),
        (
            "Architecture",
            2,
            [
                "Tell me more about architecture in fernwick.",
                "What else should I know about architecture in fernwick?",
            ],
        ),
    ],
)
def test_questions_come_from_the_heading(title: str, part: int, expected: list[str]) -> None:
    assert questions(title, "fernwick", part) == expected


def test_a_gap_gets_a_dataset_that_loads_and_rebuilds_identically(
    store: Store, indexed: VectorStore, settings: Settings, docs: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset

    dataset = build_docs_dataset(store, indexed, settings, request_for_gap(fernwick_gap(), max_chunks=8))

    manifest = read_docs_manifest(Path(dataset.manifest_path))
    assert (
        manifest.kind == "docs" and dataset.counts["kind"] == "docs" and dataset.counts["topic"] == "fernwick"
    )
    titles = [c.heading_path.split(" > ")[-1] for c in manifest.chunks]
    assert {"Testing code that grafts jobs", "Scheduling periodic jobs"} <= set(titles)
    assert 1 <= len(manifest.chunks) <= 8
    # Every chunk names its source file, whose hash is recorded.
    for source in manifest.sources:
        assert hashlib.sha256(Path(source.path).read_bytes()).hexdigest() == source.sha256
    assert {c.source for c in manifest.chunks} == {s.path for s in manifest.sources}
    assert all(c.chunker.startswith("chunker-") for c in manifest.chunks)

    files = {split: version_dir(settings, split, dataset.version) / "sft.jsonl" for split in SPLIT_DIRS}
    loaded = load_dataset(
        "json", data_files={s: str(p) for s, p in files.items()}, cache_dir=str(tmp_path / "hf-cache")
    )
    assert {s: loaded[s].num_rows for s in SPLIT_DIRS} == {
        s: manifest.counts.splits[s].sft for s in SPLIT_DIRS
    }
    assert loaded["train"].num_rows > 0 and manifest.counts.rows == 2 * len(manifest.chunks)
    rows = [r for s in SPLIT_DIRS for r in loaded[s]]
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and "fernwick" in user["content"]
        assert assistant["role"] == "assistant" and 0 < len(assistant["content"]) <= 1200
    greenhouse = [r for r in rows if "greenhouse" in r["messages"][1]["content"]]
    assert any(
        r["messages"][0]["content"].startswith("What does the fernwick documentation say about")
        for r in greenhouse
    )
    # A chunk's two questions stay in one split.
    by_chunk = {c.chunk_id: c.split for c in manifest.chunks}
    assert len(by_chunk) == len(manifest.chunks)
    assert (version_dir(settings, "train", dataset.version) / "preference.jsonl").read_bytes() == b""
    assert store.datasets.get(dataset.version).manifest_path == dataset.manifest_path

    rebuilt = rebuild_docs_dataset(store, indexed, settings, dataset.manifest_path)
    assert rebuilt.reproduced is True and rebuilt.rebuilt_from == dataset.version
    again = read_docs_manifest(Path(rebuilt.manifest_path))
    assert again.content_hash == manifest.content_hash
    for split in SPLIT_DIRS:
        before = (version_dir(settings, split, dataset.version) / "sft.jsonl").read_bytes()
        assert (version_dir(settings, split, rebuilt.version) / "sft.jsonl").read_bytes() == before

    # Without the collection, the chunks are cut again from their (unchanged) source files.
    indexed.client.delete_collection("docs")
    fresh = VectorStore(path=Path(indexed.location), embedder=indexed.embedder)
    from_files = rebuild_docs_dataset(store, fresh, settings, dataset.manifest_path)
    assert from_files.reproduced is True

    # A source that changed since gives a different dataset, and says so.
    guide = docs / "guide.txt"
    guide.write_text(
        guide.read_text(encoding="utf-8").replace("synchronously", "in process"), encoding="utf-8"
    )
    add_docs(fresh, docs)
    changed = rebuild_docs_dataset(store, fresh, settings, dataset.manifest_path)
    assert changed.reproduced is False


def test_secrets_and_personal_data_are_scrubbed(
    store: Store, indexed: VectorStore, settings: Settings
) -> None:
    dataset = build_docs_dataset(
        store,
        indexed,
        settings,
        DocsDatasetRequest(topic="fernwick", queries=["How do I add a job to a queue?"]),
    )
    written = (
        b"".join((version_dir(settings, s, dataset.version) / "sft.jsonl").read_bytes() for s in SPLIT_DIRS)
        + (settings.data_dir / "processed" / "curated" / f"{dataset.version}.jsonl").read_bytes()
    )
    assert b"ana@example.org" not in written
    assert b"[EMAIL]" in written
    assert dataset.counts["redactions"].get("email", 0) >= 1


def test_no_matching_docs_is_an_invalid_request(
    store: Store, vectors: VectorStore, settings: Settings
) -> None:
    with pytest.raises(InvalidRequest, match="genesys docs add"):
        build_docs_dataset(store, vectors, settings, DocsDatasetRequest(topic="fernwick"))
    with pytest.raises(InvalidRequest, match="no dataset manifest"):
        rebuild_docs_dataset(store, vectors, settings, settings.data_dir / "missing.json")


def test_the_manifest_is_json_with_sorted_keys_free_rows(
    store: Store, indexed: VectorStore, settings: Settings
) -> None:
    dataset = build_docs_dataset(store, indexed, settings, DocsDatasetRequest(topic="fernwick", max_chunks=3))
    lines = (
        (version_dir(settings, "train", dataset.version) / "sft.jsonl")
        .read_text(encoding="ascii")
        .splitlines()
    )
    for line in lines:
        row = json.loads(line)
        assert list(row) == ["messages"]
        assert line == json.dumps(row, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
