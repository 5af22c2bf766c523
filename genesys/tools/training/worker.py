"""The training subprocess: ``python -m genesys.tools.training.worker SPEC.json``.

It loads the base model (``load_base_model``: the weights llama.cpp serves), tokenizes the data set with
the answer-only loss mask, chooses hyperparameters for the data (recorded with their reasons), trains the
SFT adapter (then the corrective stage when enabled), and saves the peft adapter into the run's own
directory. Progress goes to the runs table at every logging step.

Exit status: 0 only when the adapter is saved and the run is marked succeeded; 1 when training failed
(the reason is on the run: an exception, a NaN loss); 143 on SIGTERM (cancelled, or stopped by the
system); 2 for a bad command line. The worker writes nothing outside the run's directory and registers
nothing: an adapter reaches the registry, and production, only through the steps after a run.

Under ``accelerate launch`` every process trains; only the first (RANK 0) writes to the store and
saves the adapter.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import traceback
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog

from genesys.errors import InvalidRequest
from genesys.runtime.store.db import Database
from genesys.runtime.store.training_runs import TrainingProgress, TrainingRunStore
from genesys.tools.training.spec import CHECKPOINTS_DIR, RESULT_FILE, RunSpec

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import Trainer

    from genesys.tools.training.hyperparameters import ChosenHyperparameters

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TERMINATED = 0, 1, 2, 128 + signal.SIGTERM
_MAX_ERROR_CHARS = 2000


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so library code cannot swallow it."""


class Reporter:
    """Writes the run's phase, hyperparameters and progress to the store; silent off the main process.

    A store that cannot be written to only loses progress rows (logged): training goes on.
    """

    def __init__(self, store: TrainingRunStore, run_id: str, *, enabled: bool) -> None:
        self.store = store
        self.run_id = run_id
        self.enabled = enabled

    def phase(self, phase: str) -> None:
        log.info("training.phase", run_id=self.run_id, phase=phase)
        self._safely(self.store.set_phase, self.run_id, phase)

    def hyperparameters(self, hp: ChosenHyperparameters) -> None:
        log.info("training.hyperparameters", run_id=self.run_id, **hp.to_dict(), reasons=hp.reasons)
        self._safely(self.store.set_hyperparameters, self.run_id, hp.to_dict(), hp.reasons)

    def progress(self, progress: TrainingProgress) -> None:
        self._safely(self.store.add_progress, self.run_id, progress)

    def _safely(self, write: Any, *args: Any) -> None:
        if not self.enabled:
            return
        try:
            write(*args)
        except Exception as exc:  # the store is a window on the run, not a reason to stop it
            log.warning("training.report_failed", run_id=self.run_id, error=str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run the spec named on the command line; returns the exit status (see the module docstring)."""
    from genesys.runtime.logging import configure_logging

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m genesys.tools.training.worker SPEC.json\n")
        return EXIT_USAGE
    configure_logging("INFO")
    spec = RunSpec.read(Path(args[0]))
    is_main = int(os.environ.get("RANK", "0")) == 0
    store = TrainingRunStore(Database(spec.database_url))
    reporter = Reporter(store, spec.run_id, enabled=is_main)
    signal.signal(signal.SIGTERM, _raise_terminated)
    if is_main:
        # The process group's leader: the worker itself, or `accelerate launch` above it; cancelling
        # signals the whole group.
        store.mark_running(spec.run_id, pid=os.getpgrp(), phase="starting")
    try:
        metrics = run_training(spec, reporter, is_main=is_main)
    except Terminated:
        if is_main:
            _end_terminated(store, spec.run_id)
        return EXIT_TERMINATED
    except Exception as exc:
        reason = _reason(exc)
        log.error("training.failed", run_id=spec.run_id, reason=reason, traceback=traceback.format_exc())
        if is_main:
            store.finish(spec.run_id, "failed", error=reason)
        return EXIT_FAILED
    if is_main:
        store.finish(spec.run_id, "succeeded", metrics=metrics, adapter_dir=str(spec.adapter_dir))
    log.info("training.succeeded", run_id=spec.run_id, adapter=str(spec.adapter_dir))
    return EXIT_OK


def run_training(spec: RunSpec, reporter: Reporter, *, is_main: bool = True) -> dict[str, Any]:
    """Train as ``spec`` asks and save the adapter; returns the run's metrics.

    Raises ``InvalidRequest`` for unusable data, ``NonFiniteLoss`` when the loss turns NaN or
    infinite, and whatever loading or training raises.
    """
    import datasets

    from genesys.runtime.base_model import load_base_model
    from genesys.tools.training.callbacks import InjectNan, NanGuard, ProgressCallback
    from genesys.tools.training.config import TrainingConfig
    from genesys.tools.training.data import (
        distinct_answers,
        load_chat_rows,
        to_dataset,
        tokenize_chat_rows,
        with_system_prompt,
    )
    from genesys.tools.training.hyperparameters import choose_hyperparameters
    from genesys.tools.training.sft import build_sft_trainer, mixed_precision

    datasets.disable_progress_bars()
    config = TrainingConfig.from_dict(spec.training)
    reporter.phase("loading")
    model, tokenizer = load_base_model(
        spec.base_model, spec.cache_dir, device=_device(spec), dtype=spec.dtype
    )

    def tokenized(path: Path) -> list[Any]:
        rows = [with_system_prompt(row, spec.system_prompt) for row in load_chat_rows(path)]
        return tokenize_chat_rows(tokenizer, rows, max_length=config.max_length, loss_on=config.loss_on)

    train_rows = tokenized(spec.train_path)
    if not train_rows:
        raise InvalidRequest(f"no row of {spec.train_path} has an answer within {config.max_length} tokens")
    eval_rows = tokenized(spec.validation_path) if spec.validation_path is not None else []
    replay_rows = (
        tokenize_chat_rows(
            tokenizer, load_chat_rows(spec.replay_path), max_length=config.max_length, loss_on=config.loss_on
        )
        if spec.replay_path is not None
        else []
    )
    n_devices = int(os.environ.get("WORLD_SIZE", "1"))
    hp = choose_hyperparameters(
        len(train_rows),
        sum(len(r.input_ids) for r in train_rows + replay_rows),
        config,
        has_validation=bool(eval_rows),
        n_validation_rows=len(eval_rows),
        n_devices=n_devices,
        n_distinct_answers=distinct_answers(spec.train_path),
        n_replay_rows=len(replay_rows),
    )
    reporter.hyperparameters(hp)

    reporter.phase("sft")
    callbacks: list[Any] = [ProgressCallback(reporter.progress, stage="sft"), NanGuard()]
    if spec.inject_nan_at_step is not None:
        callbacks.append(InjectNan(spec.inject_nan_at_step))
    trainer = build_sft_trainer(
        model,
        tokenizer,
        to_dataset(train_rows, replay_rows),
        to_dataset(eval_rows) if eval_rows else None,
        hp,
        config,
        spec.output_dir / CHECKPOINTS_DIR,
        callbacks=callbacks,
    )
    precision = mixed_precision(model)
    metrics: dict[str, Any] = {
        "device": str(next(model.parameters()).device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "mixed_precision": "bf16" if precision["bf16"] else "fp16" if precision["fp16"] else "no",
        "train_rows": len(train_rows),
        "replay_rows": len(replay_rows),
        "validation_rows": len(eval_rows),
        "sft": _train(trainer),
    }
    peft_model: PeftModel = trainer.model  # type: ignore[assignment]
    if config.corrective_stage != "none":
        metrics[config.corrective_stage] = _corrective_stage(
            spec, config, peft_model, tokenizer, hp, reporter
        )

    reporter.phase("saving")
    if is_main:
        save_adapter(peft_model, spec.adapter_dir)
        shutil.rmtree(spec.output_dir / CHECKPOINTS_DIR, ignore_errors=True)
        _write_result(spec, hp, metrics)
    return metrics


def save_adapter(model: PeftModel, target: Path) -> Path:
    """Save the trained adapter (adapter_config.json + adapter_model.safetensors) to ``target``.

    Written beside ``target`` and renamed into place, so a crash never leaves half an adapter. Raises
    ``NonFiniteLoss`` when an adapter weight is NaN or infinite.
    """
    import torch

    from genesys.tools.training.callbacks import NonFiniteLoss

    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not bool(torch.isfinite(parameter).all()):
            raise NonFiniteLoss(f"adapter weight {name} is not finite; nothing saved")
    staging = target.parent / f".{target.name}-{uuid.uuid4().hex[:8]}"
    model.save_pretrained(str(staging), selected_adapters=["default"], safe_serialization=True)
    for required in ("adapter_config.json", "adapter_model.safetensors"):
        if not (staging / required).is_file():
            raise RuntimeError(f"peft did not write {required}")
    if target.exists():
        shutil.rmtree(target)
    os.rename(staging, target)
    return target


def _train(trainer: Trainer) -> dict[str, Any]:
    """Run one stage; returns its metrics. Raises ``NonFiniteLoss`` when the final loss is not finite."""
    from genesys.tools.training.callbacks import NonFiniteLoss

    result = trainer.train()
    state = trainer.state
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    if not math.isfinite(result.training_loss):
        raise NonFiniteLoss(f"the mean training loss is {result.training_loss}")
    runtime = float(result.metrics.get("train_runtime", 0.0))
    tokens = float(state.num_input_tokens_seen or 0) or _logged_tokens(state.log_history)
    return {
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "best_eval_loss": state.best_metric,
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs": state.epoch,
        "stopped_early": state.global_step < state.max_steps,
        "runtime_s": runtime,
        "tokens_per_s": tokens / runtime if runtime and tokens else None,
    }


def _corrective_stage(
    spec: RunSpec,
    config: Any,
    model: PeftModel,
    tokenizer: Any,
    hp: ChosenHyperparameters,
    reporter: Reporter,
) -> dict[str, Any]:
    from genesys.tools.training.callbacks import NanGuard, ProgressCallback
    from genesys.tools.training.data import load_preference_rows, preference_problem, with_system_prompt
    from genesys.tools.training.preference import build_preference_trainer, drop_reference_adapter

    kind = config.corrective_stage
    # A data set version's directory holds its preference rows beside the SFT rows.
    source = spec.preference_path or (spec.train_path if spec.train_path.is_dir() else None)
    rows = load_preference_rows(source, kind) if source is not None else []
    for row in rows:
        row["prompt"] = with_system_prompt(row["prompt"], spec.system_prompt)
    problem = preference_problem(rows, kind)
    if problem is not None:
        # The SFT adapter stands on its own; the stage that could not run is recorded, not fatal.
        log.warning("training.corrective_stage_skipped", run_id=spec.run_id, stage=kind, reason=problem)
        return {"skipped": problem}
    reporter.phase(kind)
    trainer = build_preference_trainer(
        kind,
        model,
        tokenizer,
        rows,
        hp,
        config,
        spec.output_dir / CHECKPOINTS_DIR / kind,
        callbacks=[ProgressCallback(reporter.progress, stage=kind), NanGuard()],
    )
    metrics = _train(trainer) | {"rows": len(rows)}
    drop_reference_adapter(model)
    return metrics


def _write_result(spec: RunSpec, hp: ChosenHyperparameters, metrics: dict[str, Any]) -> None:
    import json

    result = {
        "run_id": spec.run_id,
        "dataset_version": spec.dataset_version,
        "base_model": str(spec.base_model) if spec.base_model else "embedded SmolLM2-135M-Instruct",
        "training": spec.training,
        "hyperparameters": hp.to_dict(),
        "reasons": hp.reasons,
        "metrics": metrics,
    }
    (spec.output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")


def _device(spec: RunSpec) -> str:
    # Under accelerate each process owns the GPU of its local rank.
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and spec.n_devices > 1:
        return f"cuda:{local_rank}"
    return spec.device


def _logged_tokens(history: list[dict[str, Any]]) -> float:
    counts = [float(entry["num_tokens"]) for entry in history if "num_tokens" in entry]
    return counts[-1] if counts else 0.0


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError):
        text = f"out of memory: {text}"
    return text[:_MAX_ERROR_CHARS]


def _end_terminated(store: TrainingRunStore, run_id: str) -> None:
    try:
        cancelled = store.get(run_id).cancel_requested
    except Exception:
        cancelled = False
    if cancelled:
        store.finish(run_id, "cancelled", error="cancelled by request")
    else:
        store.finish(
            run_id, "failed", error="terminated by SIGTERM (the system or another process stopped it)"
        )
    log.warning("training.terminated", run_id=run_id, cancelled=cancelled)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
