"""``genesys docs`` and ``genesys analyze``: what Genesys knows and what it has learned from its use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from genesys.cli import ConfigOpt, DataDirOpt, _settings, app, fail, readable_errors

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.docs_index import DocsIndexResult
    from genesys.tools.overview import InteractionOverview

docs_app = typer.Typer(
    help="Local documentation (Markdown, text, HTML) the assistant retrieves from.", no_args_is_help=True
)
app.add_typer(docs_app, name="docs")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", help="Chroma collection (default: docs.collection).")
]
# A directory with more files than this shows progress on stderr.
PROGRESS_FROM_FILES = 20


def _quiet_logs(settings: Settings) -> None:
    from genesys.runtime.logging import configure_logging

    configure_logging("WARNING", json_logs=settings.logging.json_logs)


def _vectors(settings: Settings) -> VectorStore:
    from genesys.runtime.vectors import VectorStore

    return VectorStore.from_settings(settings)


def _print(renderable: Any) -> None:
    from rich.console import Console

    Console(file=sys.stdout, soft_wrap=False, width=max(100, Console().width)).print(renderable)


def _progress(done: int, total: int, path: str) -> None:
    """Files indexed so far, on stderr: one updating line on a terminal, a line per 10% otherwise."""
    if total < PROGRESS_FROM_FILES:
        return
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rindexing {done}/{total} files{end}")
        sys.stderr.flush()
    elif done == total or done % max(1, total // 10) == 0:
        sys.stderr.write(f"indexing {done}/{total} files\n")


# --- genesys docs --------------------------------------------------------------------------------------


@docs_app.command("add")
@readable_errors
def docs_add(
    path: Annotated[Path, typer.Argument(help="A file, or a directory indexed recursively.")],
    collection: CollectionOpt = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Index Markdown, text and HTML files into Chroma (unchanged files are skipped, changed ones
    replaced, files gone from a directory dropped)."""
    from genesys.tools.docs_chunking import ChunkingParams
    from genesys.tools.docs_index import add_docs

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    if not path.exists():  # before Chroma creates its directory
        fail(f"no such file or directory: {path}")
    result = add_docs(
        _vectors(settings),
        path,
        collection=collection or settings.docs.collection,
        params=ChunkingParams.from_settings(settings),
        progress=_progress,
    )
    if path.is_file() and result.skipped and not result.files:
        fail(f"{path}: {result.skipped[0].reason}")
    if json_output:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_index_result(result)


def _print_index_result(result: DocsIndexResult) -> None:
    from rich.table import Table

    counts = result.counts
    typer.echo(
        f"{result.path} -> collection '{result.collection}': {counts['added']} added, "
        f"{counts['updated']} updated, {counts['unchanged']} unchanged, {counts['skipped']} skipped, "
        f"{counts['removed']} removed; {result.chunks_embedded} chunks embedded, "
        f"{result.chunks_deleted} deleted, {result.total_chunks} in the collection ({result.seconds:.1f} s)"
    )
    changed = [f for f in result.files if f.status != "unchanged"]
    if changed or result.skipped or result.removed:
        table = Table("status", "chunks", "file", box=None, pad_edge=False)
        for indexed in changed:
            table.add_row(indexed.status, str(indexed.chunks), indexed.path)
        for skipped in result.skipped:
            table.add_row("skipped", "", f"{skipped.path}: {skipped.reason}")
        for removed in result.removed:
            table.add_row("removed", "", removed)
        _print(table)


@docs_app.command("search")
@readable_errors
def docs_search(
    query: Annotated[str, typer.Argument(help="A question or keywords.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks.")] = 5,
    collection: CollectionOpt = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The indexed chunks closest in meaning to QUERY, with their similarity and source."""
    from rich.table import Table

    from genesys.tools.docs_index import search_docs

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    hits = search_docs(_vectors(settings), query, collection=collection or settings.docs.collection, k=k)
    if json_output:
        typer.echo("[" + ",".join(h.model_dump_json() for h in hits) + "]")
        return
    if not hits:
        typer.echo("no documentation indexed: add some with `genesys docs add PATH`")
        return
    table = Table("similarity", "source", "text", box=None, pad_edge=False)
    for hit in hits:
        preview = " ".join(hit.text.split())
        table.add_row(f"{hit.similarity:.2f}", hit.label, preview[:160] + ("…" if len(preview) > 160 else ""))
    _print(table)


@docs_app.command("list")
@readable_errors
def docs_list(
    collection: CollectionOpt = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The indexed documents: chunks, format, when indexed, whether the file still exists."""
    from rich.table import Table

    from genesys.tools.docs_index import list_docs

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    listing = list_docs(_vectors(settings), collection=collection or settings.docs.collection)
    if json_output:
        typer.echo(listing.model_dump_json(indent=2))
        return
    if not listing.sources:
        typer.echo(f"collection '{listing.collection}' is empty: add docs with `genesys docs add PATH`")
        return
    table = Table("chunks", "format", "indexed", "file", box=None, pad_edge=False)
    for source in listing.sources:
        missing = "" if source.exists else " (missing)"
        table.add_row(str(source.chunks), source.format, source.indexed_at, source.path + missing)
    _print(table)
    typer.echo(f"{len(listing.sources)} files, {listing.total_chunks} chunks in '{listing.collection}'")


@docs_app.command("remove")
@readable_errors
def docs_remove(
    path: Annotated[Path, typer.Argument(help="A file or directory (it need not exist any more).")],
    collection: CollectionOpt = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Drop the chunks of a file, or of every file under a directory."""
    from genesys.tools.docs_index import remove_docs

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    result = remove_docs(_vectors(settings), path, collection=collection or settings.docs.collection)
    if json_output:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(
        f"removed {len(result.removed)} files ({result.chunks_deleted} chunks) from '{result.collection}'; "
        f"{result.total_chunks} chunks left"
    )


@docs_app.command("dataset")
@readable_errors
def docs_dataset(
    topic: Annotated[str, typer.Argument(help="The topic (a knowledge gap's topic, or a library).")],
    query: Annotated[
        list[str] | None, typer.Option("--query", "-q", help="More queries (repeatable).")
    ] = None,
    from_gap: Annotated[
        bool,
        typer.Option("--from-gap", help="Use the knowledge gap on TOPIC: its questions and corrections."),
    ] = False,
    library: Annotated[str | None, typer.Option(help="Name used in the questions (default: TOPIC).")] = None,
    max_chunks: Annotated[int, typer.Option(min=1, max=1000, help="Chunks at most.")] = 40,
    min_similarity: Annotated[float, typer.Option(help="MiniLM cosine a chunk needs to a query.")] = 0.35,
    seed: Annotated[int, typer.Option(help="Decides the split.")] = 0,
    collection: CollectionOpt = None,
    json_output: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Build a focused dataset version for TOPIC from the indexed docs (question/answer rows, offline)."""
    from genesys.runtime.store import Store
    from genesys.tools.docs_dataset import DocsDatasetRequest, build_docs_dataset, request_for_gap
    from genesys.tools.gaps import find_knowledge_gaps

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    options: dict[str, Any] = {
        "library": library,
        "collection": collection or settings.docs.collection,
        "max_chunks": max_chunks,
        "min_similarity": min_similarity,
        "seed": seed,
    }
    store = Store(settings.database_url)
    try:
        if from_gap:
            gaps = find_knowledge_gaps(store).gaps
            gap = next((g for g in gaps if g.topic == topic), None)
            if gap is None:
                known = ", ".join(g.topic for g in gaps) or "none"
                fail(f"no knowledge gap on '{topic}' (gaps: {known}); run `genesys analyze` first")
            assert gap is not None
            request = request_for_gap(gap, **options)
            request.queries += list(query or [])
        else:
            request = DocsDatasetRequest(topic=topic, queries=list(query or []), **options)
        dataset = build_docs_dataset(store, _vectors(settings), settings, request)
    finally:
        store.close()
    if json_output:
        typer.echo(dataset.model_dump_json(indent=2))
        return
    splits = dataset.counts.get("splits", {})
    rows = ", ".join(f"{split} {counts.get('sft', 0)}" for split, counts in splits.items())
    typer.echo(
        f"{dataset.version}: {dataset.counts.get('chunks_used', 0)} chunks, {dataset.counts.get('rows', 0)} "
        f"rows ({rows})\nmanifest: {dataset.manifest_path}"
    )


# --- genesys analyze -----------------------------------------------------------------------------------


@app.command()
@readable_errors
def analyze(
    json_output: JsonOpt = False,
    update: Annotated[
        bool,
        typer.Option(
            "--update/--no-update",
            help="First analyse interactions that are new or got feedback since (default), or report "
            "the annotations as they are.",
        ),
    ] = True,
    datasets: Annotated[int, typer.Option(min=0, max=100, help="Latest dataset versions to list.")] = 5,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """What Genesys has learned from its use: interactions by type, category and tier, satisfaction,
    corrections, knowledge gaps and the latest datasets."""
    from genesys.runtime.store import Store
    from genesys.tools.overview import interaction_overview, pending_analysis

    settings = _settings(config, data_dir)
    _quiet_logs(settings)
    database = settings.database_url
    missing = database.startswith("sqlite:///") and not Path(database.removeprefix("sqlite:///")).exists()
    # A store that does not exist is reported empty, and not created as a side effect.
    store = Store("sqlite://" if missing else database)
    try:
        pending = pending_analysis(store) if update else []
        if pending:
            _bring_up_to_date(store, settings, pending)
        report = interaction_overview(store, settings, datasets=datasets)
    finally:
        store.close()
    if missing:
        report.store = database
    if json_output:
        typer.echo(report.model_dump_json(indent=2))
        return
    _print_overview(report)


def _bring_up_to_date(store: Any, settings: Settings, ids: list[str]) -> None:
    from genesys.tools.analysis import MAX_BATCH, analyze_interactions

    sys.stderr.write(f"analysing {len(ids)} interactions (new, or with feedback since their analysis)\n")
    vectors = _vectors(settings)
    step = min(MAX_BATCH, 1000)
    for start in range(0, len(ids), step):
        batch = ids[start : start + step]
        analyze_interactions(store, vectors, settings, ids=batch, limit=len(batch))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "-"


def _print_overview(report: InteractionOverview) -> None:
    from rich.table import Table

    if report.empty:
        typer.echo(
            f"No interactions yet in {report.store}: serve the API (`genesys serve`) and use it from an IDE, "
            "then run `genesys analyze` again."
        )
        return
    span = ""
    if report.first_at and report.last_at:
        span = f", {report.first_at:%Y-%m-%d %H:%M} to {report.last_at:%Y-%m-%d %H:%M} UTC"
    satisfaction = report.satisfaction
    if satisfaction.rate is None:
        satisfied = f"no explicit verdicts yet (target {satisfaction.target:.0%})"
    else:
        verdict = "meets" if satisfaction.meets_target else "below"
        satisfied = (
            f"{satisfaction.rate:.0%} ({satisfaction.positive} of {satisfaction.judged} judged answers "
            f"positive; {verdict} the target of {satisfaction.target:.0%})"
        )
    pending = f"; {report.pending_analysis} pending" if report.pending_analysis else ""
    quality = f"; mean quality {report.mean_quality:.2f}" if report.mean_quality is not None else ""
    summary = Table(box=None, show_header=False, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("interactions", f"{report.interactions}{span}")
    summary.add_row("by type", _counts(report.by_type))
    summary.add_row("by status", _counts(report.by_status))
    summary.add_row("analysed", f"{report.analyzed}{pending}{quality}")
    summary.add_row("by category", _counts(report.by_category))
    summary.add_row("by tier", _counts(report.by_tier))
    summary.add_row("satisfaction", satisfied)
    summary.add_row(
        "corrections",
        f"{report.corrections.interactions} interactions ({_counts(report.corrections.by_source)})",
    )
    summary.add_row("store", report.store)
    _print(summary)
    if report.gaps:
        gaps = Table(
            "gap", "corrected", "rate", "key terms", title="knowledge gaps", box=None, pad_edge=False
        )
        for gap in report.gaps:
            gaps.add_row(
                gap.topic,
                f"{gap.corrections} of {gap.interactions}",
                f"{gap.correction_rate:.0%}",
                ", ".join(gap.key_terms),
            )
        _print(gaps)
    else:
        typer.echo("knowledge gaps: none")
    if report.datasets:
        table = Table(
            "dataset", "kind", "created", "sft rows", title="latest datasets", box=None, pad_edge=False
        )
        for dataset in report.datasets:
            kind = f"{dataset.kind} ({dataset.topic})" if dataset.topic else dataset.kind
            table.add_row(
                dataset.version, kind, f"{dataset.created_at:%Y-%m-%d %H:%M}", _counts(dataset.rows)
            )
        _print(table)
    else:
        typer.echo("datasets: none yet")
