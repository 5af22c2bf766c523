"""From a finished run to a registered candidate: ``data/adapters/<version>/`` with the peft files (for
transformers and vLLM), the same adapter as a GGUF LoRA (``adapter.gguf``, for llama.cpp), a model card
(``lineage.json`` and ``README.md``), and a ``candidate`` row in the adapter registry. Every engine
loads a version from its directory (``engine.load_adapter(version, path)``).

A candidate serves nobody: only validation and a promotion (``AdapterRegistry.promote``) move it on.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import structlog

from genesys.errors import ExportError, InvalidRequest
from genesys.runtime.store.adapters import AdapterRegistry, AdapterVersion
from genesys.runtime.store.training_runs import TrainingRun

log = structlog.get_logger(__name__)

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
LINEAGE_FILE = "lineage.json"
CARD_FILE = "README.md"
GGUF_FILE = "adapter.gguf"


def register_run_adapter(
    registry: AdapterRegistry,
    run: TrainingRun,
    adapters_dir: Path,
    *,
    actor: str = "trainer",
    version: str | None = None,
) -> AdapterVersion:
    """Copy a succeeded run's adapter to ``adapters_dir/<version>/`` and register it as a candidate.

    The parent is the version in production at this moment (None: the base model). Raises
    ``InvalidRequest`` when the run did not succeed, its adapter files are missing, or the version's
    directory or name is taken.
    """
    if run.state != "succeeded" or not run.adapter_dir:
        raise InvalidRequest(
            f"run {run.id} is {run.state}: only a succeeded run has an adapter", param="run_id"
        )
    source = Path(run.adapter_dir)
    missing = [name for name in PEFT_FILES if not (source / name).is_file()]
    if missing:
        raise InvalidRequest(f"run {run.id}: {', '.join(missing)} missing in {source}", param="run_id")
    version = version or registry.next_version()
    target = Path(adapters_dir) / version
    if target.exists():
        raise InvalidRequest(f"{target} exists already", param="version")
    production = registry.production()
    lineage = _lineage(run, version, production.version if production else None)
    staging = target.parent / f".{version}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for name in PEFT_FILES:
            shutil.copy2(source / name, staging / name)
        _export_gguf(staging, run)
        (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, default=str), encoding="utf-8")
        (staging / CARD_FILE).write_text(model_card(lineage), encoding="utf-8")
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        registered = registry.register(
            AdapterVersion(
                version=version,
                path=str(target),
                base_model=lineage["base_model"],
                dataset_version=run.dataset_version,
                run_id=run.id,
                parent_version=lineage["parent_version"],
                hyperparameters=lineage["hyperparameters"],
                metrics=lineage["metrics"],
            ),
            actor=actor,
            reason=f"trained by run {run.id}",
        )
    except Exception:
        shutil.rmtree(target, ignore_errors=True)  # no files without a row
        raise
    log.info("adapter.registered", version=version, run_id=run.id, path=str(target))
    return registered


def _export_gguf(adapter_dir: Path, run: TrainingRun) -> None:
    """The llama.cpp form of the adapter, next to the peft files; only llama-family GGUF bases have one."""
    from genesys.tools.gguf_lora import export_lora_to_gguf

    base = Path(run.base_model) if run.base_model else None
    if base is not None and base.suffix.lower() != ".gguf" and not (base / "config.json").is_file():
        base = None  # a model name, not a path: the exporter reads shapes from the embedded GGUF
    try:
        export_lora_to_gguf(adapter_dir, adapter_dir / GGUF_FILE, base_model_path=base)
    except ExportError as exc:
        # transformers and vLLM still serve the peft files; llama.cpp says why it cannot.
        log.warning("adapter.gguf_export_failed", run_id=run.id, reason=str(exc))


def _lineage(run: TrainingRun, version: str, parent: str | None) -> dict[str, Any]:
    return {
        "version": version,
        "base_model": run.base_model or "embedded SmolLM2-135M-Instruct",
        "dataset_version": run.dataset_version,
        "run_id": run.id,
        "parent_version": parent,
        "training": run.spec.get("training", {}),
        "hyperparameters": (run.hyperparameters or {}) | {"reasons": run.reasons or []},
        "metrics": run.metrics or {},
        "trained_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def model_card(lineage: dict[str, Any]) -> str:
    """A short markdown card: what the adapter is, what it came from, how it was trained."""
    hp = lineage["hyperparameters"]
    sft = lineage["metrics"].get("sft", {})
    lines = [
        f"# Genesys adapter {lineage['version']}",
        "",
        "A LoRA adapter (peft safetensors) trained by Genesys on corrected interactions.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | {lineage['base_model']} |",
        f"| data set | {lineage['dataset_version'] or '-'} |",
        f"| training run | {lineage['run_id']} |",
        f"| parent version | {lineage['parent_version'] or 'base'} |",
        f"| trained at | {lineage['trained_at'] or '-'} |",
        f"| learning rate / epochs | {hp.get('learning_rate', '-')} / {hp.get('epochs', '-')} |",
        f"| steps | {sft.get('steps', '-')} |",
        f"| training loss (first -> last) | {sft.get('first_loss', '-')} -> {sft.get('last_loss', '-')} |",
        f"| best validation loss | {sft.get('best_eval_loss', '-')} |",
        "",
        "## Why these hyperparameters",
        "",
        *[f"- {reason}" for reason in hp.get("reasons", [])],
        "",
        f"Full lineage: `{LINEAGE_FILE}`.",
        "",
    ]
    return "\n".join(lines)
