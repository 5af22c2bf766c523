"""`genesys docs` and `genesys analyze` through typer's runner: tables, JSON, one-line errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner, Result

from genesys.cli import app
from genesys.runtime.store import Feedback, Interaction, Store, new_interaction_id

DOCS = Path(__file__).resolve().parent / "data" / "docs" / "fernwick"
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GENESYS_* variables from outside; logging configuration restored after each command."""
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    os.environ.pop("GENESYS_CONFIG", None)  # `--config` sets it for the process
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genesys: error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def seed_store(data_dir: Path) -> None:
    store = Store(f"sqlite:///{data_dir / 'genesys.db'}")
    try:
        rows = [
            ("Write a function that sorts a list", "code", [{"thumbs": "up"}]),
            ("Explain what a closure is", "explanation", [{"rating": 5}]),
            (
                "Why does my sort return None?",
                "debug",
                [{"thumbs": "down", "correction": "Use sorted(items)."}],
            ),
            ("hello there", "chat", []),
        ]
        for number, (question, kind, feedback) in enumerate(rows):
            interaction = Interaction(
                id=new_interaction_id("chat"),
                conversation_id=f"conv-{number}",
                request_messages=[{"role": "user", "content": question}],
                answer="Here it is:\n\n```python\nresult = compute(items)\n```",
                model_version="base",
                latency_ms=100.0,
                finish_reason="stop",
                interaction_type=kind,  # type: ignore[arg-type]
                created_at=START + timedelta(minutes=number),
            )
            store.interactions.record(interaction)
            for row in feedback:
                store.feedback.upsert(Feedback(interaction_id=interaction.id, **row))
    finally:
        store.close()


# --- genesys analyze -----------------------------------------------------------------------------------


def test_analyze_on_an_empty_data_dir_says_so_and_creates_nothing(tmp_path: Path) -> None:
    result = run("analyze", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No interactions yet in sqlite:///")
    assert not (tmp_path / "data").exists()

    report = json.loads(run("analyze", "--json", "--data-dir", str(tmp_path / "data")).stdout)
    assert report["empty"] is True and report["interactions"] == 0 and report["satisfaction"]["rate"] is None


def test_analyze_reports_known_counts_as_json_and_as_a_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_store(data)

    as_is = json.loads(run("analyze", "--no-update", "--json", "--data-dir", str(data)).stdout)
    assert as_is["interactions"] == 4 and as_is["analyzed"] == 0 and as_is["pending_analysis"] == 4
    assert as_is["by_type"] == {"chat": 1, "code": 1, "debug": 1, "explanation": 1}
    assert as_is["satisfaction"] | {"target": None} == {
        "judged": 3,
        "positive": 2,
        "rate": 0.6667,
        "target": None,
        "meets_target": False,
    }
    assert as_is["corrections"] == {"interactions": 1, "by_source": {"explicit": 1}}

    updated = run("analyze", "--json", "--data-dir", str(data))
    assert updated.exit_code == 0, updated.output
    assert "analysing 4 interactions" in updated.stderr
    report = json.loads(updated.stdout)
    assert (report["analyzed"], report["pending_analysis"]) == (4, 0)
    assert report["by_tier"] == {"premium": 2, "discarded": 1, "standard": 1}
    assert sum(report["by_category"].values()) == 4

    table = run("analyze", "--data-dir", str(data))
    assert table.exit_code == 0 and "analysing" not in table.stderr  # nothing left to analyse
    for expected in (
        "interactions  4, 2026-03-01 00:00 to 2026-03-01 00:03 UTC",
        "by tier       premium 2, discarded 1, standard 1",
        "satisfaction  67% (2 of 3 judged answers positive; below the target of 85%)",
        "corrections   1 interactions (explicit 1)",
        "knowledge gaps: none",
        "datasets: none yet",
    ):
        assert expected in table.stdout, table.stdout


# --- genesys docs --------------------------------------------------------------------------------------


def test_docs_add_search_list_and_remove(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    added = run("docs", "add", str(DOCS), "--json", "--data-dir", data)
    assert added.exit_code == 0, added.output
    result = json.loads(added.stdout)
    assert result["counts"] == {"added": 3, "updated": 0, "unchanged": 0, "skipped": 0, "removed": 0}
    assert result["collection"] == "docs" and result["total_chunks"] == result["chunks_embedded"] > 15

    again = run("docs", "add", str(DOCS), "--data-dir", data)
    assert again.exit_code == 0
    assert "0 added, 0 updated, 3 unchanged, 0 skipped, 0 removed; 0 chunks embedded" in again.stdout

    found = run("docs", "search", "How do I run a job every hour?", "-k", "2", "--json", "--data-dir", data)
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and hits[0]["heading_path"].endswith("Scheduling periodic jobs")
    table = run("docs", "search", "How do I run a job every hour?", "--data-dir", data)
    assert table.stdout.startswith("similarity  source") and "fernwick/guide.txt" in table.stdout

    listing = json.loads(run("docs", "list", "--json", "--data-dir", data).stdout)
    assert [Path(s["path"]).name for s in listing["sources"]] == ["README.md", "api.html", "guide.txt"]
    assert "3 files" in run("docs", "list", "--data-dir", data).stdout

    other = run("docs", "add", str(DOCS / "guide.txt"), "--collection", "fernwick-docs", "--data-dir", data)
    assert other.exit_code == 0 and "collection 'fernwick-docs'" in other.stdout

    removed = run("docs", "remove", str(DOCS / "api.html"), "--data-dir", data)
    assert removed.exit_code == 0 and removed.stdout.startswith("removed 1 files (5 chunks)")
    assert "2 files" in run("docs", "list", "--data-dir", data).stdout


def test_docs_dataset_builds_a_version_from_the_indexed_docs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("docs", "add", str(DOCS), "--data-dir", str(data)).exit_code == 0
    built = run(
        "docs", "dataset", "fernwick", "-q", "How do I run a job every hour?", "--max-chunks", "4", "--json",
        "--data-dir", str(data),
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    dataset = json.loads(built.stdout)
    assert dataset["counts"]["kind"] == "docs" and dataset["counts"]["chunks_used"] == 4
    assert Path(dataset["manifest_path"]).is_file()
    report = json.loads(run("analyze", "--no-update", "--json", "--data-dir", str(data)).stdout)
    assert [(d["version"], d["kind"], d["topic"]) for d in report["datasets"]] == [
        (dataset["version"], "docs", "fernwick")
    ]


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert "no such file or directory" in one_line_error(
        run("docs", "add", str(tmp_path / "nope"), "--data-dir", data)
    )
    assert not (tmp_path / "data").exists()
    line = one_line_error(run("docs", "add", str(DOCS), "--collection", "x", "--data-dir", data))
    assert "invalid collection name 'x'" in line
    image = tmp_path / "logo.png"
    image.write_bytes(b"\x89PNG\r\n")
    assert "unsupported type .png" in one_line_error(run("docs", "add", str(image), "--data-dir", data))
    assert "the query is empty" in one_line_error(run("docs", "search", "  ", "--data-dir", data))
    assert "nothing indexed under" in one_line_error(run("docs", "remove", str(DOCS), "--data-dir", data))
    line = one_line_error(run("docs", "dataset", "fernwick", "--from-gap", "--data-dir", data))
    assert "no knowledge gap on 'fernwick'" in line
    line = one_line_error(run("docs", "dataset", "fernwick", "--data-dir", data))
    assert "genesys docs add PATH" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("docs:\n  top_k: 0\n", encoding="utf-8")
    assert "docs.top_k" in one_line_error(run("analyze", "--config", str(bad), "--data-dir", data))
