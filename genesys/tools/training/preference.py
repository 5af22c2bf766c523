"""The corrective second stage: DPO on (correction, original answer) pairs, or KTO on thumbs.

It continues training the SFT adapter. TRL copies that adapter into a frozen "ref" adapter, so the
reference policy is the SFT model (not the bare base) and the stage only sharpens the preference for the
corrected answer; the "ref" copy is dropped before the adapter is saved. Rows are in TRL's
conversational formats (see ``data.load_preference_rows``).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import PreferenceKind
from genesys.tools.training.hyperparameters import MAX_WARMUP_RATIO, MIN_REPORTS, ChosenHyperparameters
from genesys.tools.training.sft import mixed_precision

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback

REFERENCE_ADAPTER = "ref"  # the name TRL gives the frozen copy of the adapter


def preference_arguments(
    kind: PreferenceKind,
    n_rows: int,
    hp: ChosenHyperparameters,
    config: TrainingConfig,
    output_dir: Path,
    *,
    precision: dict[str, bool] | None = None,
) -> Any:
    """TRL's DPOConfig or KTOConfig for ``n_rows`` preference rows.

    Batch and accumulation follow the SFT choice (KTO needs at least 2 rows a batch for its KL
    estimate); learning rate is ``hp.preference_learning_rate``; warm-up at most 10% of the steps.
    """
    from trl import DPOConfig, KTOConfig

    batch = max(2, hp.batch_size) if kind == "kto" else hp.batch_size
    micro_batches = math.ceil(n_rows / (batch * hp.n_devices))
    steps = max(1, math.ceil(micro_batches / hp.gradient_accumulation)) * config.preference_epochs
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": hp.gradient_accumulation,
        "learning_rate": hp.preference_learning_rate,
        "num_train_epochs": config.preference_epochs,
        "warmup_steps": min(config.warmup_steps, math.ceil(MAX_WARMUP_RATIO * steps)),
        "logging_steps": max(1, min(config.logging_steps, steps // MIN_REPORTS)),
        "logging_nan_inf_filter": False,
        "beta": config.preference_beta,
        "max_length": config.max_length,
        "eval_strategy": "no",
        "save_strategy": "no",
        "gradient_checkpointing": config.gradient_checkpointing,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "dataloader_num_workers": 0,
        **(precision or {"bf16": False, "fp16": False, "dataloader_pin_memory": False}),
    }
    return (DPOConfig if kind == "dpo" else KTOConfig)(**values)


def build_preference_trainer(
    kind: PreferenceKind,
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, Any]],
    hp: ChosenHyperparameters,
    config: TrainingConfig,
    output_dir: Path,
    *,
    callbacks: list[TrainerCallback] | None = None,
) -> Trainer:
    """A DPOTrainer or KTOTrainer that goes on training ``model``'s adapter on ``rows``."""
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOTrainer, KTOTrainer

    if kind == "kto":
        # KTO reads its rows in order (its KL term pairs neighbours), so mix thumbs up and down here.
        rows = rows[:]
        random.Random(config.seed).shuffle(rows)
    args = preference_arguments(kind, len(rows), hp, config, output_dir, precision=mixed_precision(model))
    trainer_cls = DPOTrainer if kind == "dpo" else KTOTrainer
    trainer: Trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=list(callbacks or []),
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to the store, not stdout
    return trainer


def drop_reference_adapter(model: PeftModel) -> None:
    """Remove TRL's frozen reference copy, so only the trained adapter is saved and served."""
    if REFERENCE_ADAPTER in model.peft_config:
        model.set_adapter("default")
        model.delete_adapter(REFERENCE_ADAPTER)
