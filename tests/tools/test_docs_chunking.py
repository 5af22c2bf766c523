"""Chunking of Markdown, HTML and text: heading paths, code kept whole, dropped markup, long sections
split with overlap, stable ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesys.tools.docs_chunking import (
    ChunkingParams,
    chunk_document,
    doc_format,
    pack_section,
    parse_sections,
    trim_to_sentences,
)

DOCS = Path(__file__).resolve().parents[1] / "data" / "docs" / "fernwick"


def chunks_of(name: str, params: ChunkingParams | None = None) -> list:
    path = DOCS / name
    fmt = doc_format(path)
    assert fmt is not None
    return chunk_document(str(path), path.read_text(encoding="utf-8"), fmt, params or ChunkingParams())


def test_markdown_chunks_follow_headings_and_keep_code_whole() -> None:
    chunks = chunks_of("README.md")
    paths = [c.heading_path for c in chunks]
    assert paths[:4] == [
        "Fernwick",
        "Fernwick > Installation",
        "Fernwick > Queues > Creating a queue",
        "Fernwick > Queues > Adding jobs",
    ]
    assert "Fernwick > Workers > Time limits" in paths
    # The front matter is gone; "# fernwick.toml" inside a fence is code, not a heading.
    assert all("layout: docs" not in c.text for c in chunks)
    config = next(c for c in chunks if c.heading_path == "Fernwick > Configuration")
    assert "```toml\n# fernwick.toml\n[broker]" in config.text and config.text.endswith("```")
    creating = next(c for c in chunks if c.title == "Creating a queue")
    assert 'q = fernwick.sprout("emails")' in creating.text
    assert creating.format == "markdown" and creating.source == str(DOCS / "README.md")


def test_markdown_setext_headings_and_skipped_levels() -> None:
    text = "Guide\n=====\n\nIntro text.\n\nSetup\n-----\n\nRun it.\n\n#### Deep\n\nDetail here.\n"
    sections = parse_sections(text, "markdown")
    assert [(s.headings, s.blocks) for s in sections] == [
        (("Guide",), ["Intro text."]),
        (("Guide", "Setup"), ["Run it."]),
        (("Guide", "Setup", "Deep"), ["Detail here."]),
    ]


def test_html_drops_script_style_and_navigation_and_keeps_headings() -> None:
    chunks = chunks_of("api.html")
    everything = "\n".join(c.embedding_text() + c.text for c in chunks)
    for dropped in (
        "tracking pixel",
        "font-family",
        "navigation sidebar",
        "Enable JavaScript",
        "querySelector",
    ):
        assert dropped not in everything
    paths = [c.heading_path for c in chunks]
    assert paths[0] == "Fernwick API reference"
    assert "Fernwick API reference > Queue methods > `q.census()`" in paths
    census = next(c for c in chunks if c.title == "`q.census()`")
    assert "`pending`, `running`" in census.text
    # <pre><code class="language-python"> becomes a fenced block; entities are decoded.
    assert '```python\nstats = q.census()\nif stats["pending"] > 1000:' in census.text
    harvest = next(c for c in chunks if "harvest" in c.title)
    assert "returns its result.\nRaises `fernwick.WiltedError`" in harvest.text  # <br> is a line break


def test_html_title_names_text_before_any_heading() -> None:
    html = "<html><head><title>Tiny  page</title></head><body><p>Hello <b>there</b>.</p></body></html>"
    assert [(s.headings, s.blocks) for s in parse_sections(html, "html")] == [
        (("Tiny page",), ["Hello there."])
    ]


def test_text_paragraphs_and_title_lines() -> None:
    chunks = chunks_of("guide.txt")
    assert [c.heading_path for c in chunks] == [
        "Fernwick operations guide",
        "Fernwick operations guide > Scheduling periodic jobs",
        "Fernwick operations guide > Testing code that grafts jobs",
        "Fernwick operations guide > Monitoring queues",
        "Fernwick operations guide > Recovering dead letters",
        "Fernwick operations guide > Version information",
    ]
    assert chunks[2].text.startswith("In tests you rarely want real workers.")
    # A one-line paragraph that ends like a sentence is text, not a heading.
    sections = parse_sections("Note this.\n\nMore text here.", "text")
    assert [s.blocks for s in sections] == [["Note this.", "More text here."]]


def test_long_sections_are_split_with_overlap_and_code_is_never_cut_mid_fence() -> None:
    params = ChunkingParams(chunk_tokens=60, overlap_tokens=20)
    chunks = chunks_of("README.md", params)
    architecture = [c for c in chunks if c.title == "Architecture"]
    assert len(architecture) >= 4
    assert [c.part for c in architecture] == list(range(len(architecture)))
    assert all(len(c.text) <= 60 * 4 for c in chunks)
    # Each piece after the first opens with the last sentence(s) of the one before it.
    first, second = architecture[0].text, architecture[1].text
    overlap = second.split("\n\n")[0]
    assert overlap != second and first.endswith(overlap)
    for chunk in chunks:
        assert chunk.text.count("```") % 2 == 0


def test_an_oversized_code_block_is_split_into_fenced_pieces() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(40)) + "\n```"
    pieces = pack_section([code], 200, 40)
    assert len(pieces) > 1
    for piece in pieces:
        assert piece.startswith("```python\n") and piece.endswith("\n```") and len(piece) <= 200


def test_chunk_ids_are_stable_and_change_only_with_their_text() -> None:
    before = chunks_of("README.md")
    assert [c.id for c in before] == [c.id for c in chunks_of("README.md")]
    assert len({c.id for c in before}) == len(before)
    text = (DOCS / "README.md").read_text(encoding="utf-8").replace("ten minutes", "fifteen minutes")
    after = chunk_document(str(DOCS / "README.md"), text, "markdown", ChunkingParams())
    changed = {c.id for c in after} - {c.id for c in before}
    assert len(changed) == 1
    assert next(c for c in after if c.id in changed).title == "Time limits"
    # The same text in another file is another chunk.
    elsewhere = chunk_document("/elsewhere/README.md", text, "markdown", ChunkingParams())
    assert not {c.id for c in elsewhere} & {c.id for c in after}


def test_embedding_text_leaves_code_out_unless_it_is_all_code() -> None:
    creating = next(c for c in chunks_of("README.md") if c.title == "Creating a queue")
    assert creating.embedding_text().startswith("Fernwick > Queues > Creating a queue\n\nCreate a task queue")
    assert "import fernwick" not in creating.embedding_text()
    code_only = creating.model_copy(update={"text": "```python\nq = fernwick.sprout('x')\n```"})
    assert "fernwick.sprout" in code_only.embedding_text()


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("One. Two is longer. Three.", 22, "One. Two is longer."),
        ("Short enough.", 100, "Short enough."),
        ("No sentence ends anywhere in this long line of words", 30, "No sentence ends anywhere in"),
        ("Intro sentence here.\n\n```python\nx = 1\ny = 2\n```", 40, "Intro sentence here."),
    ],
)
def test_trim_to_sentences(text: str, limit: int, expected: str) -> None:
    assert trim_to_sentences(text, limit) == expected


def test_chunking_params_refuse_an_overlap_over_half_a_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ChunkingParams(chunk_tokens=100, overlap_tokens=60)
