"""ChromaDB: embedded ``PersistentClient`` under the data dir by default, ``HttpClient`` when
``storage.chroma_url`` names a server. Every collection embeds with MiniLM (``MiniLMEmbeddingFunction``)
and uses cosine distance."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from genesys.errors import ConfigError
from genesys.runtime.embeddings import Embedder, MiniLMEmbeddingFunction, shared_embedder

# Collections Genesys keeps.
INTERACTIONS = "interactions"
DOCS = "docs"
CATEGORIES = "categories"


class VectorStore:
    def __init__(
        self, *, path: Path | None = None, url: str | None = None, embedder: Embedder | None = None
    ) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        self.embedder = embedder or shared_embedder()
        self._function = MiniLMEmbeddingFunction(self.embedder)
        self._collections: dict[str, Any] = {}
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ConfigError(f"storage.chroma_url must be http(s)://host:port, got {url!r}")
            self.client: Any = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
            self.location = url
        else:
            if path is None:
                raise ConfigError("VectorStore needs a path (embedded) or a url (server)")
            path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            self.location = str(path)

    @classmethod
    def from_settings(cls, settings: Any, embedder: Embedder | None = None) -> VectorStore:
        """Chroma of ``settings``; the embedder defaults to the shared one for ``settings`` (its
        ``storage.embedding_backend``, and the ONNX export in its data dir's model cache)."""
        return cls(
            path=settings.data_dir / "chroma",
            url=settings.storage.chroma_url,
            embedder=embedder or shared_embedder(settings),
        )

    def collection(self, name: str) -> Any:
        """The named collection (created on first use), embedding with MiniLM, cosine distance."""
        if name not in self._collections:
            self._collections[name] = self.client.get_or_create_collection(
                name=name,
                embedding_function=self._function,
                metadata={"hnsw:space": "cosine"},
            )
        return self._collections[name]
