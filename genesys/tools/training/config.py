"""``TrainingConfig``: everything a training run is asked to do, as one validated dataclass.

Built from the settings (``TrainingConfig.from_settings``): the LoRA shape from
``autogen_agents.trainer_agent.lora_config``, the seed's ``training_pipeline`` values, and
``training_pipeline.corrective_stage``. The seed's values (lr 2e-4, 3 epochs, 100 warmup steps, an
effective batch of 32) suit thousands of rows; ``choose_hyperparameters`` adapts them to the data
unless ``adapt_to_data`` is off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from genesys.errors import ConfigError

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

Strategy = Literal["steps", "epoch", "no"]
LossOn = Literal["last_answer", "all_answers"]
CorrectiveStage = Literal["none", "dpo", "kto"]
ReplayLoss = Literal["ce", "kl"]

_STRATEGIES = ("steps", "epoch", "no")
_LOSS_ON = ("last_answer", "all_answers")
_STAGES = ("none", "dpo", "kto")
_REPLAY_LOSSES = ("ce", "kl")


@dataclass
class TrainingConfig:
    """What to train and how; ``__post_init__`` rejects values that cannot work (``ConfigError``)."""

    # -- the adapter ----------------------------------------------------------------------------
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha; the update is scaled by alpha / r."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input, in [0, 1)."})
    target_modules: str | list[str] = field(
        default="all-linear",
        metadata={
            "help": "Modules that get a LoRA pair: 'all-linear' (every linear projection of the blocks, not "
            "the output head: q, k, v, o, gate, up, down for llama) or a list of module names."
        },
    )

    # -- the seed's training_pipeline ------------------------------------------------------------
    batch_size: int = field(default=4, metadata={"help": "Rows per device per forward pass."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (AdamW)."})
    epochs: int = field(default=3, metadata={"help": "Passes over the training set."})
    gradient_accumulation: int = field(default=8, metadata={"help": "Micro-batches per optimizer step."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warm-up, in optimizer steps."})
    evaluation_strategy: Strategy = field(
        default="steps", metadata={"help": "When to compute validation loss: 'steps', 'epoch' or 'no'."}
    )
    eval_steps: int = field(default=500, metadata={"help": "Optimizer steps between evaluations ('steps')."})
    save_strategy: Strategy = field(
        default="epoch", metadata={"help": "When to write a checkpoint: 'steps', 'epoch' or 'no'."}
    )
    logging_steps: int = field(default=100, metadata={"help": "Optimizer steps between progress reports."})

    # -- Genesys ------------------------------------------------------------------------------
    adapt_to_data: bool = field(
        default=True,
        metadata={
            "help": "Adapt learning rate, epochs, warm-up, batch and logging to the data set's size "
            "(see choose_hyperparameters). Off: use the values above as they are."
        },
    )
    early_stopping_patience: int = field(
        default=2,
        metadata={
            "help": "Stop after this many evaluations without a lower validation loss, and keep the best "
            "adapter; 0 disables early stopping. Needs a validation set."
        },
    )
    max_length: int = field(
        default=2048, metadata={"help": "Tokens per row; longer rows are cut at the end (keep the start)."}
    )
    loss_on: LossOn = field(
        default="last_answer",
        metadata={
            "help": "Which tokens carry the loss: 'last_answer' (the final assistant message: earlier "
            "assistant turns are history, possibly the very answer being corrected) or 'all_answers'."
        },
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many optimizer steps (short runs, benchmarks)."}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute activations in the backward pass: less memory, about a third slower. Off by "
            "default because small models fit easily (TRL turns it on by default)."
        },
    )
    neftune_noise_alpha: float | None = field(
        default=None,
        metadata={
            "help": "NEFTune: uniform noise of this scale on the input embeddings in training (TRL), meant "
            "to tie answers less to the questions' wording; None: off. Measured on the Fernwick scenario "
            "(SmolLM2-135M, 110 rows, 84 steps): alpha 5 gave 50% of unseen phrasings against 53% without."
        },
    )
    replay_loss: ReplayLoss = field(
        default="ce",
        metadata={
            "help": "How replay rows (the serving model's own answers) are trained: 'ce', cross-entropy on "
            "their tokens like any row; 'kl', the KL divergence from the model without the adapter to the "
            "model with it on their answer positions: zero while the adapter changes nothing there, so it "
            "only pulls back what drifted (see sft.replay_kl_loss)."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed for data order, dropout and LoRA initialisation."})

    # -- the corrective stage --------------------------------------------------------------------
    corrective_stage: CorrectiveStage = field(
        default="none",
        metadata={
            "help": "After SFT: 'dpo' on (correction, original answer) pairs, 'kto' on thumbs-rated answers, "
            "or 'none'. Runs only when the run is given preference rows."
        },
    )
    preference_beta: float = field(
        default=0.1, metadata={"help": "DPO/KTO beta: how far the adapter may move from the SFT policy."}
    )
    preference_epochs: int = field(default=2, metadata={"help": "Passes over the preference rows."})
    preference_lr_factor: float = field(
        default=0.2,
        metadata={"help": "Preference learning rate = the SFT learning rate chosen for the run times this."},
    )

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainingConfig:
        """The run's config from the settings, with ``overrides`` on top.

        Raises ``ConfigError`` for an unknown override or a bad value.
        """
        pipeline = settings.training_pipeline
        lora = settings.autogen_agents.trainer_agent.lora_config
        values: dict[str, Any] = {
            "batch_size": pipeline.batch_size,
            "learning_rate": pipeline.learning_rate,
            "epochs": pipeline.epochs,
            "gradient_accumulation": pipeline.gradient_accumulation,
            "warmup_steps": pipeline.warmup_steps,
            "evaluation_strategy": pipeline.evaluation_strategy,
            "eval_steps": pipeline.eval_steps,
            "save_strategy": pipeline.save_strategy,
            "logging_steps": pipeline.logging_steps,
            "corrective_stage": pipeline.corrective_stage,
            "replay_loss": pipeline.replay_loss,
            "max_length": settings.data_collection.context_window,
        }
        if lora is not None:
            values |= {"lora_rank": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout}
        return cls.from_dict(values | overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Build from a mapping (a run spec's JSON); raises ``ConfigError`` naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config key(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _problems(config: TrainingConfig) -> list[str]:
    """Every reason the config cannot work, so one error names them all."""
    out: list[str] = []
    positive_ints = (
        "lora_rank",
        "lora_alpha",
        "batch_size",
        "epochs",
        "gradient_accumulation",
        "eval_steps",
        "logging_steps",
        "max_length",
        "preference_epochs",
    )
    for name in positive_ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            out.append(f"{name} must be a positive integer, not {value!r}")
    for name in ("warmup_steps", "early_stopping_patience"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            out.append(f"{name} must be an integer >= 0, not {value!r}")
    if config.max_steps is not None and (not isinstance(config.max_steps, int) or config.max_steps <= 0):
        out.append(f"max_steps must be a positive integer or None, not {config.max_steps!r}")
    for name in ("learning_rate", "preference_beta", "preference_lr_factor"):
        value = getattr(config, name)
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            out.append(f"{name} must be a finite number > 0, not {value!r}")
    if isinstance(config.learning_rate, int | float) and config.learning_rate >= 1:
        out.append(f"learning_rate {config.learning_rate} is far too high for LoRA (use < 1, e.g. 1e-3)")
    if not isinstance(config.lora_dropout, int | float) or not 0 <= config.lora_dropout < 1:
        out.append(f"lora_dropout must be in [0, 1), not {config.lora_dropout!r}")
    for name in ("evaluation_strategy", "save_strategy"):
        if getattr(config, name) not in _STRATEGIES:
            out.append(f"{name} must be one of {', '.join(_STRATEGIES)}, not {getattr(config, name)!r}")
    if config.loss_on not in _LOSS_ON:
        out.append(f"loss_on must be one of {', '.join(_LOSS_ON)}, not {config.loss_on!r}")
    if config.replay_loss not in _REPLAY_LOSSES:
        out.append(f"replay_loss must be one of {', '.join(_REPLAY_LOSSES)}, not {config.replay_loss!r}")
    if config.corrective_stage not in _STAGES:
        out.append(f"corrective_stage must be one of {', '.join(_STAGES)}, not {config.corrective_stage!r}")
    targets = config.target_modules
    if isinstance(targets, str):
        if not targets.strip():
            out.append("target_modules must not be empty")
    elif not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        out.append("target_modules must be 'all-linear' or a non-empty list of module names")
    return out
