"""Hyperparameters that fit the data, each with the reason it was chosen.

The seed's ``training_pipeline`` (lr 2e-4, 3 epochs, 100 warm-up steps, 4 x 8 rows per step, an
evaluation every 500 steps) was written for thousands of rows. Genesys trains on tens of corrections as
often as on thousands, and there those values fail: measured on SmolLM2-135M with 60 corrections,
lr 2e-4 and 3 epochs learned nothing usable (7.5% of unseen paraphrases right); lr 1e-3 and 5 epochs
learned them (98% of trained questions, 67% of paraphrases) in about 2 minutes on 2 cores. With 15
rows, 4 x 8 rows per step is under one optimizer step per epoch, and 100 warm-up steps never end.

So, by the number of training rows:

- learning rate and epochs: under 50 rows, at least 1e-3 and 8 epochs; under 200, at least 2e-3 and
  5 epochs; under 2,000, at least 5e-4 and 3 epochs; above, as configured. 5 epochs at 1e-3 was the
  measured setting above; then, on the learning benchmark's 110 rows (17 facts, 3 phrasings and 2
  rewrites each, 3 epochs), lr 2e-3 learned 62% and 53% of the unseen phrasings where 1e-3 learned 44%
  and 35% (the same data, two seeds);
- epochs, when many rows share an answer (the Curator's rewrites of a corrected question, several users
  asking the same thing): each answer is trained about ``PASSES_PER_ANSWER`` times, so rows that repeat
  answers need proportionally fewer epochs, never fewer than ``MIN_EPOCHS``. 15 passes (3 phrasings x 5
  epochs, the first measured setting) left the benchmark's 17 facts half learned: with 4 rewrites per
  correction (181 rows), 2 epochs learned 59% of the unseen phrasings, 3 epochs 68%, 59%, 65% and 50%
  (four runs on the same data; two of them the same seed, apart only in float rounding), where 2
  rewrites and 3 epochs learned 41% and 53%. 30 passes: 3 epochs of those 181 rows, 138 steps;
- batch: at most ``MICRO_BATCH_TOKENS`` tokens per forward pass (long rows get smaller batches and more
  accumulation), and at least ``MIN_STEPS_PER_EPOCH`` optimizer steps per epoch (small sets get a
  smaller effective batch); under ``SMALL_DATA_ROWS`` rows no accumulation at all — the same compute
  in more, smaller steps learned more;
- at least ``MIN_TOTAL_STEPS`` optimizer steps: a handful of corrections asked a few ways make a few
  steps per epoch, and with the epochs cut for repeated answers a run of 18 steps learned nothing;
- warm-up: the configured steps, but never more than ``MAX_WARMUP_RATIO`` of all steps;
- logging: at least ``MIN_REPORTS`` progress reports per run;
- evaluation (with a validation set): at least every epoch and ``MIN_EVALUATIONS`` times per run, with
  early stopping on validation loss after ``early_stopping_patience`` evaluations without a gain — but
  only from ``MIN_STOPPING_ROWS`` validation rows: a cycle on 3 corrected facts has one validation row,
  whose loss stopped a run at 36 of 63 steps before it had learned the facts. Below that the loss is
  still reported, the run trains all its steps, and the Validator counts those rows as held out (they
  chose nothing).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genesys.errors import InvalidRequest
from genesys.tools.training.config import Strategy, TrainingConfig

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

# (rows below which the tier applies, minimum learning rate, minimum epochs)
SIZE_TIERS: tuple[tuple[int, float, int], ...] = ((50, 1e-3, 8), (200, 2e-3, 5), (2000, 5e-4, 3))
MICRO_BATCH_TOKENS = 8192
MIN_STEPS_PER_EPOCH = 8
MAX_WARMUP_RATIO = 0.1
MIN_REPORTS = 20
MIN_EVALUATIONS = 5
PASSES_PER_ANSWER = 30
SMALL_DATA_ROWS = 200
MIN_EPOCHS = 2
MIN_TOTAL_STEPS = 60
MIN_STOPPING_ROWS = 8


@dataclass(frozen=True)
class ChosenHyperparameters:
    """The values a run trains with, and why each was chosen (``reasons``, one line each)."""

    learning_rate: float
    epochs: int
    batch_size: int
    gradient_accumulation: int
    n_devices: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    logging_steps: int
    evaluation_strategy: Strategy
    eval_steps: int
    save_strategy: Strategy
    save_steps: int
    early_stopping_patience: int
    preference_learning_rate: float
    reasons: list[str] = field(default_factory=list)

    @property
    def effective_batch(self) -> int:
        """Rows per optimizer step, all devices together."""
        return self.batch_size * self.gradient_accumulation * self.n_devices

    @property
    def warmup_ratio(self) -> float:
        return self.warmup_steps / self.total_steps if self.total_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("reasons")
        return values | {"effective_batch": self.effective_batch, "warmup_ratio": round(self.warmup_ratio, 4)}


def choose_hyperparameters(
    n_train_rows: int,
    n_train_tokens: int,
    settings: Settings | TrainingConfig,
    *,
    has_validation: bool = False,
    n_validation_rows: int | None = None,
    n_devices: int = 1,
    n_distinct_answers: int | None = None,
    n_replay_rows: int = 0,
) -> ChosenHyperparameters:
    """Fit the configured hyperparameters to a training set of ``n_train_rows`` rows holding
    ``n_train_tokens`` tokens in all, ``n_distinct_answers`` different answers among them (None: all
    different). ``n_validation_rows``: the validation set's size when known (under
    ``MIN_STOPPING_ROWS``, no early stopping). ``settings`` is the Settings or an already built
    TrainingConfig. ``n_replay_rows`` replay rows are trained beside them every epoch: they lengthen
    the epochs (``n_train_tokens`` counts them) but do not choose the learning rate or the number of
    epochs, which fit what is to be learned.

    Raises ``InvalidRequest`` for an empty training set or a device count below 1.
    """
    if n_train_rows <= 0:
        raise InvalidRequest("the training set is empty: nothing to train on", param="train")
    if n_devices < 1:
        raise InvalidRequest(f"n_devices must be at least 1, not {n_devices}", param="n_devices")
    config = settings if isinstance(settings, TrainingConfig) else TrainingConfig.from_settings(settings)
    reasons: list[str] = []
    if config.adapt_to_data:
        lr, epochs = _rate_and_epochs(n_train_rows, config, reasons)
        epochs = _epochs_for_repeated_answers(epochs, n_train_rows, n_distinct_answers, reasons)
        batch, accumulation = _batch(
            n_train_rows + n_replay_rows, max(n_train_tokens, 0), n_devices, config, reasons
        )
    else:
        lr, epochs = config.learning_rate, config.epochs
        batch, accumulation = config.batch_size, config.gradient_accumulation
        reasons.append("adapt_to_data is off: learning rate, epochs and batch are the configured values")

    if n_replay_rows:
        reasons.append(
            f"{n_replay_rows} replay rows (the serving model's own answers) trained beside the "
            f"{n_train_rows} rows every epoch, so that the adapter keeps answering everything else as before"
        )
    micro_batches = math.ceil((n_train_rows + n_replay_rows) / (batch * n_devices))
    steps_per_epoch = max(1, math.ceil(micro_batches / accumulation))
    if config.adapt_to_data and steps_per_epoch * epochs < MIN_TOTAL_STEPS:
        needed = math.ceil(MIN_TOTAL_STEPS / steps_per_epoch)
        reasons.append(
            f"{needed} epochs instead of {epochs}: {steps_per_epoch * epochs} optimizer steps are too few "
            f"to learn anything (a cycle on 3 corrected facts, 18 steps, learned none); at least "
            f"{MIN_TOTAL_STEPS} steps"
        )
        epochs = needed
    total_steps = steps_per_epoch * epochs
    if config.max_steps is not None and config.max_steps < total_steps:
        total_steps = config.max_steps
        reasons.append(f"max_steps {config.max_steps} cuts the run short of {steps_per_epoch * epochs} steps")

    warmup = _warmup(total_steps, config, reasons)
    logging_steps = _logging(total_steps, config, reasons)
    strategy, eval_steps, patience = _evaluation(
        has_validation, n_validation_rows, steps_per_epoch, total_steps, config, reasons
    )
    save_strategy, save_steps = _saving(strategy, eval_steps, patience, config, reasons)
    preference_lr = lr * config.preference_lr_factor
    if config.corrective_stage != "none":
        reasons.append(
            f"{config.corrective_stage} learning rate {preference_lr:.2g}: {config.preference_lr_factor} x "
            "the SFT rate, since the corrective stage refines an adapter that already learned the answers"
        )
    return ChosenHyperparameters(
        learning_rate=lr,
        epochs=epochs,
        batch_size=batch,
        gradient_accumulation=accumulation,
        n_devices=n_devices,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup,
        logging_steps=logging_steps,
        evaluation_strategy=strategy,
        eval_steps=eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps,
        early_stopping_patience=patience,
        preference_learning_rate=preference_lr,
        reasons=reasons,
    )


def _rate_and_epochs(n_rows: int, config: TrainingConfig, reasons: list[str]) -> tuple[float, int]:
    for limit, min_lr, min_epochs in SIZE_TIERS:
        if n_rows < limit:
            lr = max(config.learning_rate, min_lr)
            epochs = max(config.epochs, min_epochs)
            reasons.append(
                f"learning rate {lr:g} (configured {config.learning_rate:g}) and {epochs} epochs (configured "
                f"{config.epochs}): {n_rows} rows is under {limit}; on SmolLM2-135M with 60 corrections, "
                "lr 2e-4 for 3 epochs learned nothing usable while lr 1e-3 for 5 epochs learned them, and "
                "with 110 rows lr 2e-3 learned 18 points more of the unseen phrasings than 1e-3"
            )
            return lr, epochs
    reasons.append(
        f"learning rate {config.learning_rate:g} and {config.epochs} epochs as configured: {n_rows} rows is "
        f"enough data for the seed's values"
    )
    return config.learning_rate, config.epochs


def _epochs_for_repeated_answers(epochs: int, n_rows: int, n_answers: int | None, reasons: list[str]) -> int:
    if not n_answers or n_answers >= n_rows:
        return epochs
    rows_per_answer = n_rows / n_answers
    needed = max(MIN_EPOCHS, math.ceil(PASSES_PER_ANSWER / rows_per_answer))
    if needed >= epochs:
        return epochs
    reasons.append(
        f"{needed} epochs instead of {epochs}: the {n_rows} rows hold {n_answers} different answers "
        f"({rows_per_answer:.1f} rows each), so {needed} epochs train each answer about "
        f"{needed * rows_per_answer:.0f} times (the target: {PASSES_PER_ANSWER})"
    )
    return needed


def _batch(
    n_rows: int, n_tokens: int, n_devices: int, config: TrainingConfig, reasons: list[str]
) -> tuple[int, int]:
    """Micro-batch and accumulation: bounded tokens per forward pass, enough steps per epoch."""
    target_effective = config.batch_size * config.gradient_accumulation
    batch = min(config.batch_size, n_rows)
    mean_tokens = n_tokens / n_rows if n_tokens else 0.0
    if mean_tokens and batch * mean_tokens > MICRO_BATCH_TOKENS:
        batch = max(1, int(MICRO_BATCH_TOKENS // mean_tokens))
        reasons.append(
            f"micro-batch {batch} (configured {config.batch_size}): rows average {mean_tokens:.0f} tokens "
            f"and a forward pass is kept under {MICRO_BATCH_TOKENS} tokens"
        )
    accumulation = max(1, target_effective // batch)
    if n_rows < SMALL_DATA_ROWS and accumulation > 1:
        # Measured on SmolLM2 with 17 facts: 65 steps of 4 rows learned them (53% of unseen phrasings),
        # 45 steps of 12 rows over twice the rows did not (38%). Same compute, fewer updates.
        accumulation = 1
        reasons.append(
            f"no gradient accumulation (configured {config.gradient_accumulation}): {n_rows} rows is under "
            f"{SMALL_DATA_ROWS}, where every optimizer step counts"
        )
    # An effective batch so large that an epoch has few optimizer steps teaches little per epoch.
    most_per_step = max(1, n_rows // MIN_STEPS_PER_EPOCH)
    if batch * accumulation * n_devices > most_per_step:
        accumulation = max(1, most_per_step // (batch * n_devices))
        if batch * n_devices > most_per_step:
            batch = max(1, most_per_step // n_devices)
        reasons.append(
            f"{batch} rows x {accumulation} accumulation x {n_devices} device(s) per optimizer step "
            f"(configured {config.batch_size} x {config.gradient_accumulation}): {n_rows} rows need at least "
            f"{MIN_STEPS_PER_EPOCH} optimizer steps per epoch"
        )
    else:
        reasons.append(
            f"{batch} rows x {accumulation} accumulation x {n_devices} device(s) per optimizer step: "
            f"{n_rows} rows give at least {MIN_STEPS_PER_EPOCH} steps per epoch with it"
        )
    return batch, accumulation


def _warmup(total_steps: int, config: TrainingConfig, reasons: list[str]) -> int:
    cap = math.ceil(MAX_WARMUP_RATIO * total_steps)
    if config.warmup_steps <= cap:
        reasons.append(f"warm-up {config.warmup_steps} steps as configured ({total_steps} steps in all)")
        return config.warmup_steps
    reasons.append(
        f"warm-up {cap} steps (configured {config.warmup_steps}): at most {MAX_WARMUP_RATIO:.0%} of the "
        f"run's {total_steps} optimizer steps, so the learning rate reaches its peak"
    )
    return cap


def _logging(total_steps: int, config: TrainingConfig, reasons: list[str]) -> int:
    steps = min(config.logging_steps, max(1, total_steps // MIN_REPORTS))
    if steps < config.logging_steps:
        reasons.append(
            f"progress every {steps} steps (configured {config.logging_steps}): at least {MIN_REPORTS} "
            f"reports in {total_steps} steps, and NaN losses are caught within {steps} steps"
        )
    return steps


def _evaluation(
    has_validation: bool,
    n_validation_rows: int | None,
    steps_per_epoch: int,
    total_steps: int,
    config: TrainingConfig,
    reasons: list[str],
) -> tuple[Strategy, int, int]:
    """(strategy, eval_steps, early-stopping patience)."""
    if not has_validation:
        reasons.append("no validation set: no evaluation and no early stopping")
        return "no", config.eval_steps, 0
    if config.evaluation_strategy == "no":
        reasons.append("evaluation_strategy 'no' as configured: no early stopping")
        return "no", config.eval_steps, 0
    strategy: Strategy = config.evaluation_strategy
    eval_steps = config.eval_steps
    if strategy == "steps":
        eval_steps = max(1, min(config.eval_steps, steps_per_epoch, total_steps // MIN_EVALUATIONS))
        if eval_steps != config.eval_steps:
            reasons.append(
                f"validation loss every {eval_steps} steps (configured {config.eval_steps}): at least every "
                f"epoch and {MIN_EVALUATIONS} times in {total_steps} steps"
            )
    patience = config.early_stopping_patience
    if patience and n_validation_rows is not None and n_validation_rows < MIN_STOPPING_ROWS:
        reasons.append(
            f"no early stopping: {n_validation_rows} validation rows are too few to stop on (under "
            f"{MIN_STOPPING_ROWS}, one row's loss decides); their loss is reported and they stay held out"
        )
        return strategy, eval_steps, 0
    if patience:
        reasons.append(
            f"early stopping after {patience} evaluations without a lower validation loss; the best adapter "
            "is kept"
        )
    return strategy, eval_steps, patience


def _saving(
    eval_strategy: Strategy, eval_steps: int, patience: int, config: TrainingConfig, reasons: list[str]
) -> tuple[Strategy, int]:
    if patience:
        # Keeping the best adapter means a checkpoint at every evaluation (transformers requires it).
        if config.save_strategy != eval_strategy:
            reasons.append(
                f"checkpoints follow evaluation ({eval_strategy}, configured {config.save_strategy}) so that "
                "the best one can be restored"
            )
        return eval_strategy, eval_steps
    return config.save_strategy, eval_steps
