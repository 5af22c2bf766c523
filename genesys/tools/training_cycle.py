"""``run_training_cycle``: the seed's ``manual_training_trigger`` — analyse, curate if needed, train,
register, validate.

1. Analyse: tag and score every interaction (idempotent; unchanged ones cost a metadata update).
2. Curate: a new dataset version when the store changed since the latest one (new interactions or new
   feedback), else the latest version is reused. Too little data stops the cycle with the reason.
3. Train on the version (``train_dataset``), in a worker subprocess, beside replay rows of production's
   own answers to general prompts (``genesys.tools.training.replay``) so that the adapter does not
   forget how to code; progress goes to ``progress``.
4. Register the adapter as a ``candidate`` (peft files + GGUF LoRA + lineage), with its scope when
   ``training_pipeline.adapter_scope`` is on (``write_adapter_scope``: it then answers requests close
   to its training questions, the base model the rest).
5. Validate it against production on the version's held-out rows (``held_out_paths``: its test set,
   with its validation set when that is too small to have stopped training early) and move it to
   ``validated`` or ``rejected`` with the report.

A failed step ends the cycle with ``outcome`` saying which and why; nothing that serves is touched —
a validated candidate still waits for the Deploy agent (or ``genesys rollout``) to be put in front
of users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field

from genesys.errors import InvalidRequest
from genesys.runtime.ab_router import BASE_VERSION
from genesys.runtime.store.training_runs import TrainingRun
from genesys.tools.dataset_writer import split_dir
from genesys.tools.training.data import SFT_FILE

if TYPE_CHECKING:
    from genesys.runtime.adapter_scope import AdapterScope
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import Store
    from genesys.runtime.store.adapters import AdapterVersion
    from genesys.runtime.store.datasets import DatasetVersion
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.training.config import TrainingConfig
    from genesys.tools.training.replay import ReplaySet
    from genesys.tools.training.runs import RunManager
    from genesys.tools.validation import HeldOutItem

log = structlog.get_logger(__name__)

Outcome = Literal["validated", "rejected", "no_data", "training_failed", "validation_failed"]
Progress = Callable[[str, dict[str, Any]], None]
ANALYSIS_BATCH = 5_000
# Below this many SFT training rows a cycle is not worth its minutes.
MIN_TRAIN_ROWS = 4


class CycleResult(BaseModel):
    """What one cycle did, step by step."""

    outcome: Outcome
    reason: str = Field(description="One sentence: why the cycle ended as it did.")
    dataset_version: str | None = None
    curated: bool = Field(False, description="Whether this cycle curated a new dataset version.")
    run_id: str | None = None
    candidate: str | None = None
    baseline: str | None = None
    validation: dict[str, Any] | None = Field(None, description="The Validator's report (JSON).")
    seconds: dict[str, float] = Field(default_factory=dict, description="Wall time of each step.")


def _rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def analyze_all(store: Store, vectors: VectorStore, settings: Settings) -> int:
    """Analyse every interaction, oldest first, in batches; returns how many were analysed."""
    from genesys.tools.analysis import analyze_interactions
    from genesys.tools.tagging import CategoryIndex

    index = CategoryIndex.load(settings.data_collection.tag_categories, vectors)
    done = 0
    since: datetime | None = None
    while True:
        batch = store.interactions.list(limit=ANALYSIS_BATCH, offset=done)
        if not batch:
            return done
        analyze_interactions(
            store, vectors, settings, ids=[i.id for i in batch], limit=len(batch), category_index=index
        )
        done += len(batch)
        since = batch[-1].created_at
        log.debug("cycle.analysed", done=done, since=since)


def store_changed_since(store: Store, moment: datetime) -> bool:
    """Whether an interaction or a feedback arrived at or after ``moment``."""
    return bool(store.interactions.list(since=moment, limit=1) or store.feedback.list(since=moment, limit=1))


def dataset_for_training(
    store: Store, settings: Settings, *, vectors: VectorStore, force: bool = False, analyse: bool = True
) -> tuple[DatasetVersion, bool]:
    """The dataset version to train on and whether it was curated now: the latest one unless the
    store changed since (or ``force``). ``analyse=False`` skips the analysis when the caller (the
    Analyst) has just run it. Raises ``InvalidRequest`` when there is nothing to curate."""
    from genesys.tools.curation import CurationRequest, curate_dataset

    latest = store.datasets.latest()
    if latest is not None and not force and not store_changed_since(store, latest.created_at):
        return latest, False
    if store.interactions.count() == 0:
        raise InvalidRequest("no interactions yet: nothing to learn from")
    if analyse:
        analyze_all(store, vectors, settings)
    # The Curator's rewrites come with the settings' data_collection.paraphrases_per_correction.
    return curate_dataset(store, settings, request=CurationRequest()), True


def train_rows(settings: Settings, version: str) -> int:
    """SFT rows in the version's training split."""
    return _rows(split_dir(settings.data_dir, "train", version) / SFT_FILE)


def held_out_paths(settings: Settings, version: str) -> list[Path]:
    """The version's held-out sets, to validate a candidate on: its test set, and its validation set
    when that is under ``MIN_STOPPING_ROWS`` rows (training did not stop on it, so it chose nothing: a
    3-fact cycle has one test row, and one row is a coin toss for a gate); the validation set alone
    when the test set is empty. Empty when the version holds no held-out row."""
    from genesys.tools.training.hyperparameters import MIN_STOPPING_ROWS

    test = split_dir(settings.data_dir, "test", version) / SFT_FILE
    validation = split_dir(settings.data_dir, "validation", version) / SFT_FILE
    n_validation = _rows(validation)
    paths = [test] if _rows(test) else []
    if n_validation and (not paths or n_validation < MIN_STOPPING_ROWS):
        paths.append(validation)
    return paths


def held_out_items(paths: list[Path]) -> list[HeldOutItem]:
    """The held-out items of ``paths`` (see ``held_out_paths``), in order, with ids that name their
    split's directory (``test_set/sft:1``): each split's file is ``sft.jsonl``."""
    from genesys.tools.validation import held_out_from_chat_jsonl

    return [
        item.model_copy(update={"id": f"{path.parent.parent.name}/{item.id}"})
        for path in paths
        for item in held_out_from_chat_jsonl(path)
    ]


def run_training_cycle(
    settings: Settings,
    store: Store,
    manager: RunManager,
    engine: InferenceEngine,
    *,
    vectors: VectorStore | None = None,
    config: TrainingConfig | None = None,
    force_curate: bool = False,
    dataset_version: str | None = None,
    progress: Progress | None = None,
    humaneval: bool = True,
) -> CycleResult:
    """One cycle, from the store to a validated or rejected candidate; see the module docstring.

    ``engine`` must be loaded; the candidate (and production) are loaded into it for validation.
    ``dataset_version`` trains on that version instead of curating.
    """
    from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary
    from genesys.runtime.serving_versions import load_version
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.training.adapter_files import register_run_adapter
    from genesys.tools.training.dataset_run import train_dataset
    from genesys.tools.validation import record_validation, validate_candidate

    def tell(event: str, /, **details: Any) -> None:
        log.info(f"cycle.{event}", **details)
        if progress is not None:
            progress(event, details)

    seconds: dict[str, float] = {}
    started = time.perf_counter()

    # 1-2: the data.
    if dataset_version is not None:
        dataset, curated = store.datasets.get(dataset_version), False
    else:
        tell("curating")
        try:
            dataset, curated = dataset_for_training(
                store, settings, vectors=vectors or VectorStore.from_settings(settings), force=force_curate
            )
        except InvalidRequest as exc:
            return CycleResult(outcome="no_data", reason=str(exc), seconds=seconds)
    seconds["curate"] = round(time.perf_counter() - started, 2)
    n_train = train_rows(settings, dataset.version)
    tell("dataset", version=dataset.version, curated=curated, train_rows=n_train)
    result = CycleResult(
        outcome="no_data", reason="", dataset_version=dataset.version, curated=curated, seconds=seconds
    )
    if n_train < MIN_TRAIN_ROWS:
        result.reason = (
            f"dataset {dataset.version} has {n_train} training rows; at least {MIN_TRAIN_ROWS} are needed"
        )
        return result
    held_out = held_out_paths(settings, dataset.version)
    if not held_out:
        result.reason = f"dataset {dataset.version} has no test or validation rows to validate a candidate on"
        return result

    # 3-4: the candidate, trained beside replay rows of what production answers now.
    step = time.perf_counter()
    production = store.adapters.production()
    system_prompt = PromptLibrary().get(ASSISTANT_PROMPT).text
    replay = _replay(settings, engine, production, system_prompt, n_train, tell)
    seconds["replay"] = round(time.perf_counter() - step, 2)
    step = time.perf_counter()
    run = train_dataset(
        settings,
        store,
        manager,
        dataset.version,
        config=config,
        watch=lambda r: _tell_run(tell, r),
        replay_path=replay.path if replay is not None else None,
    )
    seconds["train"] = round(time.perf_counter() - step, 2)
    result.run_id = run.id
    if run.state != "succeeded":
        result.outcome = "training_failed"
        result.reason = f"training run {run.id} {run.state}: {run.error or 'no reason recorded'}"
        return result
    candidate = register_run_adapter(store.adapters, run, settings.data_dir / "adapters")
    result.candidate = candidate.version
    tell("registered", version=candidate.version, run_id=run.id)
    if settings.training_pipeline.adapter_scope:
        scope = write_adapter_scope(settings, dataset.version, Path(candidate.path))
        tell("scoped", version=candidate.version, threshold=scope.threshold, questions=len(scope.questions))

    # 5: the gate.
    step = time.perf_counter()
    result.baseline = production.version if production else BASE_VERSION
    try:
        load_version(engine, candidate)
        if production is not None:
            load_version(engine, production)
        report = validate_candidate(
            engine,
            settings,
            candidate=candidate.version,
            baseline=production.version if production else None,
            held_out=held_out_items(held_out),
            system_prompt=system_prompt,
            humaneval=humaneval,
            progress=lambda what, done, total: tell("validating", what=what, done=done, total=total),
        )
    except Exception as exc:  # a validation that cannot run rejects nothing and promotes nothing
        log.exception("cycle.validation_error", candidate=candidate.version)
        result.outcome = "validation_failed"
        result.reason = f"validation of {candidate.version} could not run: {exc}"
        seconds["validate"] = round(time.perf_counter() - step, 2)
        return result
    record_validation(store.adapters, candidate.version, report)
    seconds["validate"] = round(time.perf_counter() - step, 2)
    result.validation = report.model_dump(mode="json", exclude={"items", "humaneval"})
    # A report with an error (the engine failed, ...) judged nothing: the candidate stays a candidate.
    result.outcome = "validation_failed" if report.error else "validated" if report.passed else "rejected"
    result.reason = report.summary
    seconds["total"] = round(time.perf_counter() - started, 2)
    tell(result.outcome, candidate=candidate.version, reason=report.summary)
    return result


def write_adapter_scope(settings: Settings, version: str, adapter_dir: Path) -> AdapterScope:
    """Write ``scope.json`` beside an adapter trained on dataset ``version``: its training questions
    and a threshold calibrated against the general replay prompts (``genesys.runtime.adapter_scope``)."""
    from genesys.runtime.adapter_scope import build_scope, questions_and_answers
    from genesys.runtime.embeddings import shared_embedder
    from genesys.tools.training.replay import replay_prompts

    questions, answers = questions_and_answers(split_dir(settings.data_dir, "train", version) / SFT_FILE)
    scope = build_scope(
        questions,
        answers,
        [prompt.text for prompt in replay_prompts()],
        shared_embedder(settings).embed,
        threshold=settings.training_pipeline.adapter_scope_threshold,
    )
    scope.write(adapter_dir)
    log.info("cycle.scope", adapter=str(adapter_dir), threshold=scope.threshold, reasons=scope.reasons)
    return scope


def _replay(
    settings: Settings,
    engine: InferenceEngine,
    production: AdapterVersion | None,
    system_prompt: str,
    n_train: int,
    tell: Callable[..., None],
) -> ReplaySet | None:
    """Production's own answers to general prompts, to train beside ``n_train`` rows (None when
    ``training_pipeline.replay_ratio`` is 0)."""
    from genesys.runtime.serving_versions import load_version
    from genesys.tools.training.replay import build_replay_set, replay_count, replay_prompts

    pipeline = settings.training_pipeline
    count = replay_count(n_train, pipeline.replay_ratio, len(replay_prompts()))
    if count == 0:
        return None
    tell("replay", rows=count, version=production.version if production else BASE_VERSION)
    if production is not None:
        load_version(engine, production)
    replay = build_replay_set(
        engine,
        settings.data_dir / "processed" / "replay",
        count=count,
        system_prompt=system_prompt,
        adapter=production.version if production else None,
        max_tokens=pipeline.replay_max_tokens,
    )
    tell("replayed", rows=replay.rows, skipped=replay.skipped, cached=replay.cached, seconds=replay.seconds)
    return replay


def _tell_run(tell: Callable[..., None], run: TrainingRun) -> None:
    tell(
        "training",
        run_id=run.id,
        state=run.state,
        phase=run.phase,
        step=run.step,
        total_steps=run.total_steps,
        epoch=run.epoch,
        loss=run.loss,
        eta_s=run.eta_s,
    )
