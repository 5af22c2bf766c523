"""``genesys bench ingest``: interactions tagged and scored per second, against the bare embedding call.

One run builds a temporary store (SQLite) and an embedded Chroma, fills the store with synthetic
interactions and their feedback (``genesys.bench.synthetic``), then measures two sides on the same
interactions:

- **embed**: ``Embedder.embed`` on exactly the texts that the analysis embeds (``embedding_text``),
  computed beforehand: the floor that no tagging can beat;
- **analyze**: ``analyze_interactions`` end to end: reading the interactions and their feedback,
  scoring, building the texts, embedding, categories and topics, the Chroma upsert and the
  annotation writes.

A warm-up batch loads the model and embeds the categories first. Each measured round uses fresh
interactions (so every analysis inserts, as the Analyst does with new interactions), and the order
of the two sides alternates between rounds so that drift in machine load hits both alike. Medians
are reported, with the targets of the issue: analyze >= 400 interactions/s and analyze >= 0.8 x
embed. The load average and each side's CPU seconds are recorded: on a shared machine the wall-clock
rates move with the load (a round whose CPU time is far below twice its wall time was starved).

Both sides use one ``Embedder`` with the asked backend (torch, ONNX Runtime in float32 or int8); the
result names the one that ran (``backend_used``: a failed ONNX export falls back to torch). The
default, ``onnx-int8``, is the fastest backend whose categories stay those of float32: the analysis
embeds its near ties again in float32 (``genesys.tools.tagging.settle_near_ties``; counted per round
as ``settled``), which the bare call does not. After the measured rounds the categories the analysis
stored are compared with those of torch float32 on the same texts (``categories``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import BaseModel, Field

from genesys.bench.synthetic import SyntheticInteraction, synthetic_interactions
from genesys.errors import InvalidRequest
from genesys.runtime.embeddings import Embedder, EmbedderBackend, EmbedderDtype, ResolvedBackend
from genesys.runtime.store import Store
from genesys.runtime.store.feedback import FeedbackRow
from genesys.runtime.store.interactions import InteractionRow
from genesys.runtime.vectors import VectorStore
from genesys.tools.analysis import AnalysisSummary, analyze_interactions
from genesys.tools.tagging import EMBED_MAX_CHARS, CategoryIndex, embedding_text, question_text

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

log = structlog.get_logger(__name__)

RATE_TARGET = 400.0  # interactions/s, end to end, on 2 cores
RATIO_TARGET = 0.8  # analyze rate / bare embedding rate
DEFAULT_BACKEND: EmbedderBackend = "onnx-int8"  # the fastest that keeps float32's categories
WARMUP = 64
_START = datetime(2026, 1, 1, tzinfo=UTC)

Side = Literal["embed", "analyze"]


class IngestRound(BaseModel):
    round: int
    order: list[Side]
    embed_s: float
    analyze_s: float
    embed_cpu_s: float = Field(description="CPU seconds of this process during the embed side.")
    analyze_cpu_s: float = Field(description="CPU seconds of this process during the analyze side.")
    embed_rate: float = Field(description="Interactions/s of the bare embedding call.")
    analyze_rate: float = Field(description="Interactions/s of analyze_interactions, end to end.")
    ratio: float = Field(description="analyze_rate / embed_rate.")
    settled: int = Field(0, description="Near ties the analysis embedded again in float32.")


class CategoryAgreement(BaseModel):
    """The measured interactions' categories (as the analysis stored them) against torch float32's."""

    reference: str = "torch float32"
    compared: int
    agreeing: int
    agreement: float = Field(description="agreeing / compared.")
    moved: dict[str, int] = Field(description='"stored<-reference" -> count, for each disagreement.')


class IngestBenchResult(BaseModel):
    """Both rates (medians over rounds), their ratio, and the pass/fail of each target."""

    interactions: int = Field(description="Interactions per round.")
    rounds: int
    seed: int
    embed_rate: float
    analyze_rate: float
    ratio: float
    rate_target: float = RATE_TARGET
    ratio_target: float = RATIO_TARGET
    pass_rate: bool
    pass_ratio: bool
    passed: bool
    mean_question_chars: float = Field(description="Mean length of the questions, uncut.")
    mean_embedded_chars: float = Field(description="Mean length of the embedded texts.")
    embed_max_chars: int = EMBED_MAX_CHARS
    backend: EmbedderBackend = Field(description="The embedder's backend as asked.")
    backend_used: ResolvedBackend = Field(description="The backend that ran both sides.")
    dtype: EmbedderDtype = Field(description="The embedder's torch precision as asked.")
    bf16: bool = Field(description="Whether the weights ran in bfloat16.")
    batch_size: int = Field(description="The embedder's batch size.")
    cpu_count: int
    torch_threads: int
    onnx_threads: int | None = Field(description="ONNX Runtime's worker threads (ONNX backends).")
    load_before: float = Field(description="1-minute load average before the measured rounds.")
    load_after: float
    runs: list[IngestRound]
    last_summary: AnalysisSummary
    categories: CategoryAgreement | None = Field(
        None, description="Agreement with torch float32 (None when not checked)."
    )


def _load() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0


def _insert(store: Store, items: list[SyntheticInteraction]) -> None:
    """Bulk insert (one transaction): the set-up is not what is measured."""
    with store.db.session() as session:
        session.add_all([InteractionRow(**item.interaction.model_dump()) for item in items])
    with store.db.session() as session:
        session.add_all([FeedbackRow(**f.model_dump()) for item in items for f in item.feedback])


def _settle(store: Store) -> None:
    """Checkpoint SQLite's write-ahead log, so that the set-up's writes are not flushed (by an
    automatic checkpoint) inside a measured round."""
    if store.url.startswith("sqlite"):
        with store.db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@contextmanager
def _workdir(data_dir: Path | None) -> Iterator[Path]:
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        yield data_dir
        return
    with tempfile.TemporaryDirectory(prefix="genesys-bench-ingest-") as tmp:
        yield Path(tmp)


def run_ingest_bench(
    *,
    interactions: int = 1000,
    rounds: int = 3,
    seed: int = 0,
    dtype: EmbedderDtype = "float32",
    backend: EmbedderBackend = DEFAULT_BACKEND,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    check_categories: bool = True,
) -> IngestBenchResult:
    """Measure both sides on ``rounds`` fresh batches of ``interactions`` each (see the module doc).

    ``dtype``: the embedder's torch precision, for both sides (``Embedder``'s default is float32).
    ``backend``: the embedder's backend, for both sides (default ``DEFAULT_BACKEND``).
    ``data_dir``: where the store and Chroma go (default: a temporary directory, removed after).
    ``cache_dir``: where the ONNX export is kept (default: the configured data dir's model cache, so
    that runs reuse it). ``check_categories``: after the measured rounds, compare the categories the
    analysis stored with those of torch float32 on the same texts (``CategoryAgreement``).
    Raises ``InvalidRequest`` for sizes below 1 or ONNX asked with bfloat16.
    """
    import torch

    from genesys.runtime.settings import load_settings

    if interactions < 1 or rounds < 1:
        raise InvalidRequest("interactions and rounds must be at least 1")
    try:
        embedder = Embedder(dtype=dtype, backend=backend, cache_dir=cache_dir)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    with _workdir(data_dir) as root:
        settings = load_settings(data_dir=root)
        store = Store(f"sqlite:///{root / 'genesys.db'}")
        vectors = VectorStore(path=root / "chroma", embedder=embedder)
        try:
            # Batches lie one day apart, so ``since`` + ``limit`` selects exactly one of them.
            starts = [_START + timedelta(days=d) for d in range(rounds + 1)]
            warmup = synthetic_interactions(WARMUP, seed=seed + 10_000, start=starts[0])
            batches = [
                synthetic_interactions(interactions, seed=seed + r, start=starts[r + 1])
                for r in range(rounds)
            ]
            _insert(store, warmup)
            for batch in batches:
                _insert(store, batch)
            log.info("bench.ingest.ready", interactions=interactions, rounds=rounds, root=str(root))
            vectors.embedder.embed([embedding_text(i.interaction) for i in warmup])  # loads (or exports)
            analyze_interactions(store, vectors, settings, since=starts[0], limit=WARMUP)
            _settle(store)
            load_before = _load()
            runs: list[IngestRound] = []
            summary: AnalysisSummary | None = None
            for r, batch in enumerate(batches):
                texts = [embedding_text(item.interaction) for item in batch]
                order: list[Side] = ["embed", "analyze"] if r % 2 == 0 else ["analyze", "embed"]
                seconds: dict[Side, float] = {}
                cpu: dict[Side, float] = {}
                for side in order:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if side == "embed":
                        vectors.embedder.embed(texts)
                    else:
                        summary = analyze_interactions(
                            store, vectors, settings, since=starts[r + 1], limit=interactions
                        )
                        if summary.analyzed != interactions:
                            raise RuntimeError(f"analysed {summary.analyzed} of {interactions} interactions")
                    seconds[side] = time.perf_counter() - started
                    cpu[side] = time.process_time() - cpu_started
                assert summary is not None
                embed_rate, analyze_rate = interactions / seconds["embed"], interactions / seconds["analyze"]
                runs.append(
                    IngestRound(
                        round=r,
                        order=order,
                        embed_s=round(seconds["embed"], 4),
                        analyze_s=round(seconds["analyze"], 4),
                        embed_cpu_s=round(cpu["embed"], 4),
                        analyze_cpu_s=round(cpu["analyze"], 4),
                        embed_rate=round(embed_rate, 1),
                        analyze_rate=round(analyze_rate, 1),
                        ratio=round(analyze_rate / embed_rate, 4),
                        settled=summary.settled,
                    )
                )
                log.info("bench.ingest.round", **runs[-1].model_dump())
            load_after = _load()
            agreement = (
                _category_agreement(store, embedder, settings, [i for b in batches for i in b])
                if check_categories
                else None
            )
        finally:
            store.close()
    assert summary is not None
    embed_rate = statistics.median(r.embed_rate for r in runs)
    analyze_rate = statistics.median(r.analyze_rate for r in runs)
    ratio = round(analyze_rate / embed_rate, 4)
    every = [item.interaction for batch in batches for item in batch]
    return IngestBenchResult(
        interactions=interactions,
        rounds=rounds,
        seed=seed,
        embed_rate=round(embed_rate, 1),
        analyze_rate=round(analyze_rate, 1),
        ratio=ratio,
        pass_rate=analyze_rate >= RATE_TARGET,
        pass_ratio=ratio >= RATIO_TARGET,
        passed=analyze_rate >= RATE_TARGET and ratio >= RATIO_TARGET,
        mean_question_chars=round(statistics.fmean(len(question_text(i)) for i in every), 1),
        mean_embedded_chars=round(statistics.fmean(len(embedding_text(i)) for i in every), 1),
        backend=backend,
        backend_used=embedder.backend_used,
        dtype=dtype,
        bf16=embedder.uses_bf16,
        batch_size=embedder.batch_size,
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        onnx_threads=embedder.onnx_threads,
        load_before=load_before,
        load_after=load_after,
        runs=runs,
        last_summary=summary,
        categories=agreement,
    )


def _category_agreement(
    store: Store, embedder: Embedder, settings: Settings, items: list[SyntheticInteraction]
) -> CategoryAgreement:
    """The stored categories of ``items`` against torch float32's on the same texts and types."""
    reference = embedder if embedder.backend_used == "torch" and embedder.exact else Embedder(backend="torch")
    index = CategoryIndex.build(settings.data_collection.tag_categories, reference)
    interactions = [item.interaction for item in items]
    expected = index.classify(
        reference.embed([embedding_text(i) for i in interactions]), [i.interaction_type for i in interactions]
    )
    stored = store.annotations.for_interactions([i.id for i in interactions])
    moved = Counter(
        f"{stored[i.id].category}<-{category}"
        for i, (category, _) in zip(interactions, expected, strict=True)
        if stored[i.id].category != category
    )
    agreeing = len(interactions) - sum(moved.values())
    return CategoryAgreement(
        compared=len(interactions),
        agreeing=agreeing,
        agreement=round(agreeing / len(interactions), 5),
        moved=dict(moved),
    )


def _engine(result: IngestBenchResult) -> str:
    if result.backend_used == "torch":
        fell_back = " (ONNX failed)" if result.backend.startswith("onnx") else ""
        precision = "bfloat16" if result.bf16 else "float32"
        return f"torch {precision}{fell_back}, {result.torch_threads} threads"
    precision = "int8" if result.backend_used == "onnx-int8" else "float32"
    return f"ONNX Runtime {precision}, {result.onnx_threads} threads"


def format_table(result: IngestBenchResult) -> str:
    """A human-readable summary of the result."""

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        f"genesys bench ingest: {result.interactions} interactions x {result.rounds} rounds "
        f"({result.cpu_count} cores, MiniLM on {_engine(result)}, batch {result.batch_size}, "
        f"load {result.load_before} -> {result.load_after})",
        f"{'side':<28}{'interactions/s':>16}",
        f"{'bare embedding (embed)':<28}{result.embed_rate:>16.1f}",
        f"{'tagged + scored (analyze)':<28}{result.analyze_rate:>16.1f}",
        f"analyze rate  >= {result.rate_target:.0f}/s: {mark(result.pass_rate)} ({result.analyze_rate:.1f})",
        f"analyze/embed >= {result.ratio_target:.2f}: {mark(result.pass_ratio)} ({result.ratio:.3f})",
        f"embedded text: {result.mean_embedded_chars:.0f} chars on average "
        f"(questions {result.mean_question_chars:.0f}; cut at {result.embed_max_chars})",
        "rounds: "
        + ", ".join(
            f"{r.round}: {r.analyze_rate:.0f}/{r.embed_rate:.0f} ({r.ratio:.2f})" for r in result.runs
        ),
        "cpu s (embed/analyze): "
        + ", ".join(f"{r.embed_cpu_s:.2f}/{r.analyze_cpu_s:.2f}" for r in result.runs)
        + "; near ties settled in float32: "
        + ", ".join(str(r.settled) for r in result.runs),
    ]
    if result.categories is not None:
        agreement = result.categories
        rows.append(
            f"categories = {agreement.reference}'s: {agreement.agreeing}/{agreement.compared} "
            f"({agreement.agreement:.2%})" + (f", moved {agreement.moved}" if agreement.moved else "")
        )
    return "\n".join(rows)
