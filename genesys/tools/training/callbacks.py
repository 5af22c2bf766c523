"""Trainer callbacks of a run: progress reports, the NaN guard, and a fault injector for tests.

They work with every transformers ``Trainer`` (TRL's SFT, DPO and KTO trainers included).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from genesys.runtime.store.training_runs import TrainingProgress

log = structlog.get_logger(__name__)

# Logged values that must stay finite; one NaN or inf ends the run.
_WATCHED = ("loss", "grad_norm", "eval_loss")


class NonFiniteLoss(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite: the adapter is ruined, the run fails."""


class ProgressCallback(TrainerCallback):
    """Turns every log of the trainer into a ``TrainingProgress`` (step, epoch, loss, tokens/s, ETA)."""

    def __init__(self, report: Callable[[TrainingProgress], None], *, stage: str = "sft") -> None:
        self.report = report
        self.stage = stage
        self._started = time.monotonic()
        self._last_time = self._started
        self._last_tokens = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = self._last_time = time.monotonic()
        self._last_tokens = float(state.num_input_tokens_seen or 0)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" not in logs and "eval_loss" not in logs:
            return  # the end-of-training summary repeats what was reported
        now = time.monotonic()
        tokens = float(logs.get("num_tokens") or state.num_input_tokens_seen or 0)
        rate = None
        if tokens > self._last_tokens and now > self._last_time:
            rate = (tokens - self._last_tokens) / (now - self._last_time)
            self._last_tokens, self._last_time = tokens, now
        step, total = state.global_step, state.max_steps
        eta = (now - self._started) / step * max(total - step, 0) if step else None
        self.report(
            TrainingProgress(
                stage=self.stage,
                step=step,
                total_steps=total,
                epoch=state.epoch,
                loss=_finite_or_none(logs.get("loss")),
                eval_loss=_finite_or_none(logs.get("eval_loss")),
                learning_rate=logs.get("learning_rate"),
                tokens_per_s=rate,
                eta_s=eta,
            )
        )


class NanGuard(TrainerCallback):
    """Raises ``NonFiniteLoss`` at the first log with a NaN or infinite loss or gradient norm.

    Needs ``logging_nan_inf_filter=False``: by default transformers hides such losses in its logs.
    """

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        for key in _WATCHED:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteLoss(f"{key} became {value} at step {state.global_step}")


class InjectNan(TrainerCallback):
    """For tests: fills one trainable parameter with NaN after step ``at_step``, so the next loss is NaN."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step != self.at_step:
            return
        model = kwargs["model"]
        parameter = next(p for p in model.parameters() if p.requires_grad)
        parameter.data.fill_(float("nan"))
        log.warning("training.nan_injected", step=state.global_step)


def _finite_or_none(value: float | None) -> float | None:
    # The database column takes NaN badly on some backends; the NaN guard reports it as the error instead.
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)
