"""Indexing docs into a real embedded Chroma with the real MiniLM: idempotent re-adds, changed and
removed files, skipped files, search by meaning, and the assistant's retriever."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import InvalidRequest
from genesys.runtime.embeddings import Embedder
from genesys.runtime.settings import DocsConfig, Settings
from genesys.runtime.vectors import VectorStore
from genesys.tools.docs_index import (
    DocsRetriever,
    add_docs,
    docs_context,
    list_docs,
    remove_docs,
    search_docs,
)

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs" / "fernwick"
REPO = Path(__file__).resolve().parents[2]
UNRELATED = (
    "Reverse a list in Python",
    "What does functools.lru_cache do?",
    "How do I center a div in CSS?",
    "Write a SQL query that joins two tables",
)


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    """A writable copy of the Fernwick docs."""
    target = tmp_path / "docs"
    shutil.copytree(DOCS, target)
    return target


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> VectorStore:
    """The Fernwick docs indexed once for the search tests."""
    vectors = VectorStore(path=tmp_path_factory.mktemp("search") / "chroma", embedder=embedder)
    add_docs(vectors, DOCS)
    return vectors


def test_adding_a_directory_indexes_each_format_and_adding_it_again_is_a_no_op(
    vectors: VectorStore, docs: Path
) -> None:
    first = add_docs(vectors, docs)
    assert {(Path(f.path).name, f.format, f.status) for f in first.files} == {
        ("README.md", "markdown", "added"),
        ("api.html", "html", "added"),
        ("guide.txt", "text", "added"),
    }
    assert first.skipped == [] and first.removed == []
    assert first.chunks_embedded == first.total_chunks == sum(f.chunks for f in first.files) > 15
    ids = set(vectors.collection("docs").get()["ids"])

    again = add_docs(vectors, docs)
    assert [f.status for f in again.files] == ["unchanged"] * 3
    assert (again.chunks_embedded, again.chunks_deleted, again.total_chunks) == (0, 0, first.total_chunks)
    assert set(vectors.collection("docs").get()["ids"]) == ids

    metadata = vectors.collection("docs").get(include=["metadatas"], limit=1)["metadatas"][0]
    assert {"source", "heading_path", "chunk_index", "file_sha256", "content_sha256", "chunker"} <= set(
        metadata
    )


def test_a_changed_file_re_embeds_only_its_changed_chunks(vectors: VectorStore, docs: Path) -> None:
    add_docs(vectors, docs)
    readme = docs / "README.md"
    readme.write_text(
        readme.read_text(encoding="utf-8").replace("ten minutes", "twenty-five minutes"), encoding="utf-8"
    )

    result = add_docs(vectors, docs)

    changed = {Path(f.path).name: (f.status, f.embedded) for f in result.files}
    assert changed == {
        "README.md": ("updated", 1),
        "api.html": ("unchanged", 0),
        "guide.txt": ("unchanged", 0),
    }
    assert (result.chunks_embedded, result.chunks_deleted) == (1, 1)
    hit = search_docs(vectors, "What is the default time limit of a fernwick job?", k=1)[0]
    assert "twenty-five minutes" in hit.text and hit.title == "Time limits"
    assert not any("ten minutes" in t for t in vectors.collection("docs").get()["documents"])


def test_a_file_gone_from_the_directory_loses_its_chunks(vectors: VectorStore, docs: Path) -> None:
    first = add_docs(vectors, docs)
    guide_chunks = next(f.chunks for f in first.files if f.path.endswith("guide.txt"))
    (docs / "guide.txt").unlink()

    result = add_docs(vectors, docs)

    assert result.removed == [str(docs / "guide.txt")]
    assert result.total_chunks == first.total_chunks - guide_chunks
    assert [Path(s.path).name for s in list_docs(vectors).sources] == ["README.md", "api.html"]

    removed = remove_docs(vectors, docs / "api.html")
    assert removed.removed == [str(docs / "api.html")] and removed.total_chunks == result.total_chunks - 5
    with pytest.raises(InvalidRequest, match="nothing indexed"):
        remove_docs(vectors, docs / "api.html")


def test_binary_foreign_and_unreadable_files_are_skipped_with_a_reason(
    vectors: VectorStore, docs: Path
) -> None:
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (docs / "binary.md").write_bytes(b"# Title\x00\x01\x02 binary")
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (docs / "empty.md").write_text("  \n", encoding="utf-8")
    (docs / ".hidden.md").write_text("# Hidden\n\nNot indexed.", encoding="utf-8")
    (docs / "node_modules").mkdir()
    (docs / "node_modules" / "dep.md").write_text("# Dependency\n\nNot indexed.", encoding="utf-8")

    result = add_docs(vectors, docs)

    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons.keys() == {"logo.png", "binary.md", "latin1.txt", "empty.md"}
    assert reasons["logo.png"].startswith("unsupported type .png")
    assert reasons["binary.md"] == "binary file"
    assert reasons["latin1.txt"] == "not UTF-8 text"
    assert reasons["empty.md"] == "empty"
    assert len(result.files) == 3


def test_a_missing_path_or_a_bad_collection_name_is_an_invalid_request(
    vectors: VectorStore, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="no such file or directory"):
        add_docs(vectors, tmp_path / "missing")
    with pytest.raises(InvalidRequest, match="invalid collection name"):
        add_docs(vectors, DOCS, collection="a")
    with pytest.raises(InvalidRequest, match="empty"):
        search_docs(vectors, "  ")


def test_progress_is_reported_per_file(vectors: VectorStore, docs: Path) -> None:
    calls: list[tuple[int, int]] = []
    add_docs(vectors, docs, progress=lambda done, total, _path: calls.append((done, total)))
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("how can I run fernwick jobs synchronously in my unit tests?", "Testing code that grafts jobs"),
        ("How do I run a job every hour?", "Scheduling periodic jobs"),
        ("What error do I get when a job exceeds its time limit?", "Time limits"),
        ("How do I print the fernwick version?", "Version information"),
        ("How do I get the return value of a job?", "Reading results"),
    ],
)
def test_search_finds_the_section_for_a_paraphrased_question(
    indexed: VectorStore, question: str, title: str
) -> None:
    hits = search_docs(indexed, question, k=3)
    assert hits[0].title == title, [(h.title, h.similarity) for h in hits]
    assert hits[0].similarity > 0.4
    assert hits == sorted(hits, key=lambda h: -h.similarity)


@pytest.mark.parametrize("question", UNRELATED)
def test_unrelated_questions_stay_below_the_default_threshold(indexed: VectorStore, question: str) -> None:
    assert search_docs(indexed, question, k=1, min_similarity=DocsConfig().min_similarity) == []


# --- the assistant's retriever -------------------------------------------------------------------------


def index_into(settings: Settings, embedder: Embedder, path: Path) -> VectorStore:
    vectors = VectorStore.from_settings(settings, embedder=embedder)
    add_docs(vectors, path, collection=settings.docs.collection)
    return vectors


def test_the_retriever_opens_nothing_when_no_docs_were_ever_indexed(settings: Settings) -> None:
    retriever = DocsRetriever.from_settings(settings)
    assert retriever is not None
    assert retriever.retrieve("How do I create a fernwick queue?") == []
    assert not (settings.data_dir / "chroma").exists()
    settings.docs.retrieval = False
    assert DocsRetriever.from_settings(settings) is None


def test_the_retriever_finds_relevant_chunks_within_its_budget_and_nothing_for_unrelated_questions(
    settings: Settings, embedder: Embedder
) -> None:
    index_into(settings, embedder, DOCS)
    retriever = DocsRetriever.from_settings(settings)
    assert retriever is not None

    hits = retriever.retrieve("How do I run fernwick jobs synchronously in my unit tests?")
    assert hits and hits[0].title == "Testing code that grafts jobs"
    assert len(hits) <= settings.docs.top_k
    assert all(h.similarity >= settings.docs.min_similarity for h in hits)
    for question in UNRELATED:
        assert retriever.retrieve(question) == []

    settings.docs.max_context_tokens = 90  # the first chunk does not fit whole: it is cut to sentences
    small = retriever.retrieve("How do I run fernwick jobs synchronously in my unit tests?")
    assert len(small) == 1 and len(small[0].text) < len(hits[0].text)
    assert small[0].text.endswith(".")
    message = docs_context(small)
    assert "[1] fernwick/guide.txt — Fernwick operations guide > Testing code that grafts jobs" in message


@pytest.mark.slow
def test_the_retriever_sees_docs_another_process_added(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    index_into(settings, embedder, DOCS / "guide.txt")
    retriever = DocsRetriever.from_settings(settings)
    assert retriever is not None
    assert retriever.retrieve("How do I run a job every hour?")  # opened, with the guide only
    question = "What should I do when fernwick says the broker files are damaged?"
    assert all("RootRotError" not in h.text for h in retriever.retrieve(question))

    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from genesys.runtime.vectors import VectorStore
        from genesys.tools.docs_index import add_docs
        vectors = VectorStore(path=Path({str(settings.data_dir / "chroma")!r}))
        add_docs(vectors, {str(DOCS / "api.html")!r})
        """
    )
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env=env, timeout=300)

    hits = retriever.retrieve(question)
    assert any("RootRotError" in h.text for h in hits), hits
