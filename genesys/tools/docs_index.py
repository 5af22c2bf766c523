"""Local documentation in Chroma: index files (``add_docs``), look them up (``search_docs``,
``list_docs``), drop them (``remove_docs``), and the assistant's retriever (``DocsRetriever``).

Files are cut by ``genesys.tools.docs_chunking`` and embedded with MiniLM (the heading path, then the
text). Each chunk's metadata names its source file, heading path, position, the sha256 of the file and
of the chunk, and the chunker's signature, so that:

- re-adding an unchanged file is a no-op (same file hash, same chunker: nothing is read into Chroma);
- re-adding a changed file embeds only the chunks whose text changed, updates the position of the
  others and deletes the ones that are gone;
- re-adding a directory also drops the chunks of files that are no longer there (or no longer
  readable): afterwards the collection holds exactly the readable documents under it.

Every change bumps the collection's ``genesys_revision`` metadata. An embedded Chroma
(``PersistentClient``) does not see vectors another process added to its directory: its index lives in
memory. The retriever of a running server therefore watches the revision and reopens its client when
``genesys docs add`` (another process) changed the collection; a Chroma server has no such problem.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field, computed_field

from genesys.errors import InvalidRequest
from genesys.runtime.settings import DocsConfig
from genesys.tools.docs_chunking import (
    CHARS_PER_TOKEN,
    FORMATS,
    ChunkingParams,
    DocChunk,
    DocFormat,
    chunk_document,
    doc_format,
    estimate_tokens,
    trim_to_sentences,
)

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings
    from genesys.runtime.vectors import VectorStore

log = structlog.get_logger(__name__)

DEFAULT_COLLECTION = "docs"
REVISION_KEY = "genesys_revision"
MAX_FILE_BYTES = 10 * 1024 * 1024
# Directories never worth indexing (besides hidden ones).
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", "dist", "build"})
# Chunks embedded and written per Chroma call.
EMBED_BATCH = 256
_PAGE = 5_000
_BINARY_SNIFF = 8192

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, path)``: called before each file of an ``add_docs`` run."""
FileStatus = Literal["added", "updated", "unchanged"]


class IndexedFile(BaseModel):
    path: str
    format: DocFormat
    status: FileStatus = Field(description="added: new; updated: its chunks changed; unchanged: no-op.")
    chunks: int
    embedded: int = Field(description="Chunks embedded by this run (changed or new text).")


class SkippedFile(BaseModel):
    path: str
    reason: str


class DocsIndexResult(BaseModel):
    """What ``add_docs`` did to the collection."""

    collection: str
    path: str
    files: list[IndexedFile]
    skipped: list[SkippedFile]
    removed: list[str] = Field(description="Sources under the path whose chunks were dropped.")
    chunks_embedded: int
    chunks_deleted: int
    total_chunks: int = Field(description="Chunks in the collection afterwards.")
    seconds: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        out = {"added": 0, "updated": 0, "unchanged": 0}
        for indexed in self.files:
            out[indexed.status] += 1
        return out | {"skipped": len(self.skipped), "removed": len(self.removed)}


class DocSource(BaseModel):
    path: str
    format: str
    chunks: int
    sha256: str
    indexed_at: str
    exists: bool


class DocsListing(BaseModel):
    collection: str
    sources: list[DocSource]
    total_chunks: int


class DocsRemoveResult(BaseModel):
    collection: str
    path: str
    removed: list[str]
    chunks_deleted: int
    total_chunks: int


class DocHit(BaseModel):
    """A chunk found for a query."""

    chunk_id: str
    source: str
    heading_path: str
    title: str
    text: str
    similarity: float = Field(description="Cosine similarity of MiniLM embeddings, in [-1, 1].")

    @property
    def label(self) -> str:
        """The source's last two path parts and the heading path, for people and for the model."""
        short = "/".join(Path(self.source).parts[-2:])
        return f"{short} — {self.heading_path}" if self.heading_path else short


# --- helpers ----------------------------------------------------------------------------------------


def check_collection_name(name: str) -> str:
    """``name`` when Chroma accepts it; raises ``InvalidRequest`` otherwise."""
    import re

    if not re.match(DocsConfig.COLLECTION_NAME, name):
        raise InvalidRequest(
            f"invalid collection name {name!r}: 3-63 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit",
            param="collection",
        )
    return name


def _resolve(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def _under(source: str, root: Path) -> bool:
    return source == str(root) or source.startswith(str(root).rstrip(os.sep) + os.sep)


def _chunk_metadata(chunk: DocChunk, file_sha: str, total: int, signature: str, when: str) -> dict[str, Any]:
    return {
        "source": chunk.source,
        "format": chunk.format,
        "heading_path": chunk.heading_path,
        "title": chunk.title,
        "chunk_index": chunk.index,
        "section_part": chunk.part,
        "chunks": total,
        "file_sha256": file_sha,
        "content_sha256": chunk.content_sha256,
        "chunker": signature,
        "indexed_at": when,
    }


def _stored(collection: Any, where: dict[str, Any] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """source -> {chunk id -> metadata} of every chunk in the collection (or matching ``where``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], where=where, limit=_PAGE, offset=offset)
        for chunk_id, metadata in zip(page["ids"], page["metadatas"] or [], strict=False):
            metadata = dict(metadata or {})
            out.setdefault(str(metadata.get("source", "")), {})[chunk_id] = metadata
        if len(page["ids"]) < _PAGE:
            return out
        offset += _PAGE


def _bump_revision(collection: Any) -> None:
    # Replaces the collection's metadata; the distance function lives in its configuration.
    collection.modify(metadata={REVISION_KEY: f"{time.time_ns():x}-{os.getpid()}"})


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root``, sorted, skipping hidden and dependency directories and links."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(directory) / name
            if not name.startswith(".") and not path.is_symlink():
                yield path


def _read_text(path: Path) -> tuple[str | None, bytes, str]:
    """(text, raw bytes, "") or (None, b"", why it cannot be indexed)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, b"", f"too large ({size} bytes; the limit is {MAX_FILE_BYTES})"
        raw = path.read_bytes()
    except OSError as exc:
        return None, b"", f"unreadable: {exc.strerror or exc}"
    if b"\x00" in raw[:_BINARY_SNIFF]:
        return None, b"", "binary file"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, b"", "not UTF-8 text"
    if not text.strip():
        return None, b"", "empty"
    return text, raw, ""


class _PendingWrites:
    """Chunks to embed and write, flushed in batches (one MiniLM call and one upsert per batch)."""

    def __init__(self, vectors: VectorStore, collection: Any) -> None:
        self.vectors = vectors
        self.collection = collection
        self.chunks: list[DocChunk] = []
        self.metadatas: list[dict[str, Any]] = []
        self.embedded = 0

    def add(self, chunk: DocChunk, metadata: dict[str, Any]) -> None:
        self.chunks.append(chunk)
        self.metadatas.append(metadata)
        if len(self.chunks) >= EMBED_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.chunks:
            return
        embeddings = self.vectors.embedder.embed([c.embedding_text() for c in self.chunks])
        self.collection.upsert(
            ids=[c.id for c in self.chunks],
            embeddings=embeddings,
            documents=[c.text for c in self.chunks],
            metadatas=self.metadatas,
        )
        self.embedded += len(self.chunks)
        self.chunks, self.metadatas = [], []


# --- indexing ---------------------------------------------------------------------------------------


def add_docs(
    vectors: VectorStore,
    path: Path | str,
    *,
    collection: str = DEFAULT_COLLECTION,
    params: ChunkingParams | None = None,
    progress: ProgressFn | None = None,
) -> DocsIndexResult:
    """Index a file, or every Markdown, text and HTML file under a directory (recursively; hidden and
    dependency directories are skipped), into ``collection``.

    Unchanged files are left alone; changed files have their chunks replaced (only new text is
    embedded); for a directory, chunks of files no longer under it are dropped. Files that are binary,
    not UTF-8, empty, too large, unreadable or of another type are skipped with the reason.
    Raises ``InvalidRequest`` for a missing path or an invalid collection name.
    """
    started = time.perf_counter()
    params = params or ChunkingParams()
    check_collection_name(collection)
    root = _resolve(path)
    if not root.exists():
        raise InvalidRequest(f"no such file or directory: {path}", param="path")
    target = vectors.collection(collection)
    stored = _stored(target)
    candidates = list(_walk(root)) if root.is_dir() else [root]
    signature = params.signature()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    writes = _PendingWrites(vectors, target)
    files: list[IndexedFile] = []
    skipped: list[SkippedFile] = []
    deleted = 0
    indexed: set[str] = set()
    for number, file in enumerate(candidates):
        if progress is not None:
            progress(number, len(candidates), str(file))
        fmt = doc_format(file)
        if fmt is None:
            suffix = file.suffix or "(no extension)"
            known = ", ".join(sorted(FORMATS))
            skipped.append(
                SkippedFile(path=str(file), reason=f"unsupported type {suffix} (indexed: {known})")
            )
            continue
        text, raw, why = _read_text(file)
        if text is None:
            skipped.append(SkippedFile(path=str(file), reason=why))
            continue
        source = str(file)
        indexed.add(source)
        file_sha = hashlib.sha256(raw).hexdigest()
        old = stored.get(source, {})
        if old and all(
            m.get("file_sha256") == file_sha and m.get("chunker") == signature and m.get("chunks") == len(old)
            for m in old.values()
        ):
            files.append(
                IndexedFile(path=source, format=fmt, status="unchanged", chunks=len(old), embedded=0)
            )
            continue
        chunks = chunk_document(source, text, fmt, params)
        if not chunks:
            indexed.discard(source)
            skipped.append(SkippedFile(path=source, reason="no text"))
            continue
        new_ids = {c.id for c in chunks}
        gone = [i for i in old if i not in new_ids]
        if gone:
            target.delete(ids=gone)
            deleted += len(gone)
        kept = [c for c in chunks if c.id in old]
        if kept:  # same text: a metadata update, no embedding
            target.update(
                ids=[c.id for c in kept],
                metadatas=[_chunk_metadata(c, file_sha, len(chunks), signature, when) for c in kept],
            )
        embedded_before = writes.embedded + len(writes.chunks)
        for chunk in chunks:
            if chunk.id not in old:
                writes.add(chunk, _chunk_metadata(chunk, file_sha, len(chunks), signature, when))
        files.append(
            IndexedFile(
                path=source,
                format=fmt,
                status="updated" if old else "added",
                chunks=len(chunks),
                embedded=writes.embedded + len(writes.chunks) - embedded_before,
            )
        )
    writes.flush()
    removed = sorted(s for s in stored if _under(s, root) and s not in indexed)
    for source in removed:
        target.delete(ids=list(stored[source]))
        deleted += len(stored[source])
    if progress is not None:
        progress(len(candidates), len(candidates), "")
    if writes.embedded or deleted or any(f.status != "unchanged" for f in files):
        _bump_revision(target)
    result = DocsIndexResult(
        collection=collection,
        path=str(root),
        files=files,
        skipped=skipped,
        removed=removed,
        chunks_embedded=writes.embedded,
        chunks_deleted=deleted,
        total_chunks=int(target.count()),
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "docs.indexed",
        collection=collection,
        path=str(root),
        **result.counts,
        chunks_embedded=result.chunks_embedded,
        chunks_deleted=deleted,
        seconds=result.seconds,
    )
    return result


def remove_docs(
    vectors: VectorStore, path: Path | str, *, collection: str = DEFAULT_COLLECTION
) -> DocsRemoveResult:
    """Drop the chunks of a file, or of every file under a directory (the files need not exist any
    more). Raises ``InvalidRequest`` when nothing indexed lies under ``path``."""
    check_collection_name(collection)
    root = _resolve(path)
    target = vectors.collection(collection)
    stored = _stored(target)
    removed = sorted(s for s in stored if _under(s, root))
    if not removed:
        raise InvalidRequest(f"nothing indexed under {root} in collection '{collection}'", param="path")
    deleted = 0
    for source in removed:
        target.delete(ids=list(stored[source]))
        deleted += len(stored[source])
    _bump_revision(target)
    log.info("docs.removed", collection=collection, path=str(root), sources=len(removed), chunks=deleted)
    return DocsRemoveResult(
        collection=collection,
        path=str(root),
        removed=removed,
        chunks_deleted=deleted,
        total_chunks=int(target.count()),
    )


def list_docs(vectors: VectorStore, *, collection: str = DEFAULT_COLLECTION) -> DocsListing:
    """The indexed documents of ``collection``: path, format, chunks, file hash, when indexed, and
    whether the file still exists."""
    check_collection_name(collection)
    stored = _stored(vectors.collection(collection))
    sources = []
    for source in sorted(stored):
        metadata = next(iter(stored[source].values()))
        sources.append(
            DocSource(
                path=source,
                format=str(metadata.get("format", "")),
                chunks=len(stored[source]),
                sha256=str(metadata.get("file_sha256", "")),
                indexed_at=str(metadata.get("indexed_at", "")),
                exists=Path(source).is_file(),
            )
        )
    return DocsListing(collection=collection, sources=sources, total_chunks=sum(s.chunks for s in sources))


# --- search -----------------------------------------------------------------------------------------


def _hits(found: dict[str, Any], min_similarity: float) -> list[DocHit]:
    hits = []
    for chunk_id, text, metadata, distance in zip(
        found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
    ):
        similarity = round(1.0 - float(distance), 4)
        if similarity < min_similarity:
            continue
        fields = dict(metadata or {})
        hits.append(
            DocHit(
                chunk_id=chunk_id,
                source=str(fields.get("source", "")),
                heading_path=str(fields.get("heading_path", "")),
                title=str(fields.get("title", "")),
                text=text or "",
                similarity=similarity,
            )
        )
    return hits


def query_collection(
    collection: Any, embedding: Any, *, k: int, min_similarity: float, count: int | None = None
) -> list[DocHit]:
    """The ``k`` chunks nearest to ``embedding`` with at least ``min_similarity``, best first."""
    total = int(collection.count()) if count is None else count
    if total == 0:
        return []
    found = collection.query(
        query_embeddings=[embedding],
        n_results=min(k, total),
        include=["documents", "metadatas", "distances"],
    )
    return _hits(found, min_similarity)


def search_docs(
    vectors: VectorStore,
    query: str,
    *,
    collection: str = DEFAULT_COLLECTION,
    k: int = 5,
    min_similarity: float = 0.0,
) -> list[DocHit]:
    """The ``k`` indexed chunks closest in meaning to ``query`` (MiniLM cosine), best first, leaving out
    those below ``min_similarity``. Raises ``InvalidRequest`` for an empty query or ``k`` outside 1..100.
    """
    check_collection_name(collection)
    if not query.strip():
        raise InvalidRequest("the query is empty", param="query")
    if not 1 <= k <= 100:
        raise InvalidRequest(f"k must be between 1 and 100, got {k}", param="k")
    embedding = vectors.embedder.embed([query])[0]
    return query_collection(vectors.collection(collection), embedding, k=k, min_similarity=min_similarity)


def fit_to_budget(hits: list[DocHit], max_tokens: int) -> list[DocHit]:
    """The hits, best first, whose texts fit in ``max_tokens`` (estimated); the first one that does
    not fit is cut to whole sentences when at least 50 tokens are left, and the rest are dropped."""
    kept: list[DocHit] = []
    left = max_tokens
    for hit in hits:
        cost = estimate_tokens(hit.text) + estimate_tokens(hit.label) + 4
        if cost <= left:
            kept.append(hit)
            left -= cost
            continue
        room = left - estimate_tokens(hit.label) - 4
        if room >= 50:
            kept.append(hit.model_copy(update={"text": trim_to_sentences(hit.text, room * CHARS_PER_TOKEN)}))
        break
    return kept


DOCS_PREAMBLE = (
    "Documentation excerpts that may help with the user's last message, from the indexed docs. "
    "Use them when they apply and say which source you used; ignore them when they do not apply."
)


def docs_context(hits: list[DocHit]) -> str:
    """The system message that carries retrieved chunks to the model, numbered, each with its source."""
    parts = [DOCS_PREAMBLE]
    for number, hit in enumerate(hits, start=1):
        parts.append(f"[{number}] {hit.label}\n{hit.text}")
    return "\n\n".join(parts)


# --- the assistant's retriever ------------------------------------------------------------------------

# The question is at the end of a long message (code first, then what to do with it); MiniLM reads
# the first 256 word pieces, about 1,000 characters.
QUERY_CHARS = 1000


class DocsRetriever:
    """Finds the indexed chunks relevant to a user's message, for the assistant's context.

    Per request: when no docs were ever indexed (an embedded Chroma without its directory) nothing is
    opened at all (3 microseconds); otherwise one Chroma metadata read and one count (0.7 ms together
    when the collection is empty), and only when it holds chunks, one MiniLM embedding of the message
    (its last ``QUERY_CHARS`` characters) and one Chroma query. Measured on 2 shared AMD EPYC cores
    under a load average of 5.6, 220 chunks indexed: 18.6 ms a request (median of 30), of which the
    embedding is 17 ms and Chroma 1.5 ms, with ``OMP_WAIT_POLICY=PASSIVE``; without it the embedding's
    two OpenMP threads spin against the other processes and the same request took 100-120 ms (median)
    on that busy machine. The first request that embeds loads MiniLM (1-2 s idle, up to 10 s on a busy
    machine) unless ``warm_up`` ran.

    Thread-safe. Failures (an unreachable Chroma server, a damaged index) are logged and give no
    chunks: documentation must never break a chat request.
    """

    def __init__(
        self,
        *,
        open_vectors: Callable[[], VectorStore],
        config: DocsConfig,
        embedded_path: Path | None,
    ) -> None:
        self._open_vectors = open_vectors
        self.config = config
        self._embedded_path = embedded_path
        self._vectors: VectorStore | None = None
        self._function: Any = None
        self._revision: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> DocsRetriever | None:
        """The retriever for ``settings.docs``; None when ``docs.retrieval`` is off."""
        if not settings.docs.retrieval:
            return None

        def open_vectors() -> VectorStore:
            from genesys.runtime.vectors import VectorStore

            return VectorStore.from_settings(settings)

        embedded = None if settings.storage.chroma_url else settings.data_dir / "chroma"
        return cls(open_vectors=open_vectors, config=settings.docs, embedded_path=embedded)

    def warm_up(self) -> None:
        """Open Chroma and, when docs are indexed, load MiniLM, so the first request does not wait."""
        try:
            collection, count = self._state()
            if collection is not None and count and self._vectors is not None:
                self._vectors.embedder.embed(["warm up"])
        except Exception as exc:  # a warm-up is best effort
            log.warning("docs.warm_up_failed", error=str(exc))

    def warm_up_in_background(self) -> None:
        threading.Thread(target=self.warm_up, name="genesys-docs-warm-up", daemon=True).start()

    def _state(self) -> tuple[Any, int]:
        """The collection (None when it does not exist) and its size, reopening an embedded client
        whose collection another process changed."""
        if self._embedded_path is not None and not self._embedded_path.exists():
            return None, 0
        with self._lock:
            if self._vectors is None:
                self._open()
            assert self._vectors is not None
            try:
                collection = self._vectors.client.get_collection(
                    self.config.collection, embedding_function=self._function
                )
            except Exception:  # chromadb's NotFoundError: nothing was ever indexed
                return None, 0
            if self._embedded_path is not None:
                revision = str((collection.metadata or {}).get(REVISION_KEY, ""))
                if self._revision is not None and revision != self._revision:
                    collection = self._reopen()
                self._revision = revision
            return collection, int(collection.count())

    def _open(self) -> None:
        from genesys.runtime.embeddings import MiniLMEmbeddingFunction

        self._vectors = self._open_vectors()
        self._function = MiniLMEmbeddingFunction(self._vectors.embedder)

    def _reopen(self) -> Any:
        # Chroma caches one client system per path and process; a fresh one reads the index from disk.
        # Objects made from the old system keep working with it.
        assert self._vectors is not None
        self._vectors.client.clear_system_cache()
        self._open()
        assert self._vectors is not None
        log.info("docs.reopened", collection=self.config.collection)
        return self._vectors.client.get_collection(self.config.collection, embedding_function=self._function)

    def retrieve(self, query: str) -> list[DocHit]:
        """Chunks for ``query`` above ``min_similarity``, at most ``top_k``, within ``max_context_tokens``,
        best first; [] when nothing is indexed or nothing is relevant."""
        query = query.strip()[-QUERY_CHARS:]
        if not query:
            return []
        started = time.perf_counter()
        try:
            collection, count = self._state()
            if collection is None or count == 0 or self._vectors is None:
                return []
            embedding = self._vectors.embedder.embed([query])[0]
            hits = query_collection(
                collection,
                embedding,
                k=self.config.top_k,
                min_similarity=self.config.min_similarity,
                count=count,
            )
        except Exception as exc:
            log.warning("docs.retrieval_failed", error=str(exc))
            return []
        hits = fit_to_budget(hits, self.config.max_context_tokens)
        (log.info if hits else log.debug)(
            "docs.retrieved",
            chunks=[h.chunk_id for h in hits],
            similarities=[h.similarity for h in hits],
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return hits
