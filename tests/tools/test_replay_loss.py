"""Replay rows trained by KL from the model without the adapter (``replay_loss: kl``), on a tiny
random-weight llama: zero while the adapter changes nothing, cross-entropy as usual for the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from genesys.runtime.base_model import load_base_model
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import REPLAY_COLUMN, to_dataset, tokenize_chat_rows
from genesys.tools.training.hyperparameters import choose_hyperparameters
from genesys.tools.training.sft import build_sft_trainer
from tests.support.tiny_llama import chat_rows


def _trainer(tiny: tuple[Any, Any], tmp_path: Path, replay_loss: str, steps: int = 4) -> Any:
    model, tokenizer = tiny
    rows = tokenize_chat_rows(tokenizer, [r["messages"] for r in chat_rows(8)], max_length=512)
    config = TrainingConfig(max_steps=steps, lora_dropout=0.0, replay_loss=replay_loss)  # type: ignore[arg-type]
    hp = choose_hyperparameters(6, sum(len(r.input_ids) for r in rows), config, n_replay_rows=2)
    dataset = to_dataset(rows[:6], rows[6:])
    return build_sft_trainer(model, tokenizer, dataset, None, hp, config, tmp_path / "out")


def _batch(trainer: Any, indices: list[int]) -> dict[str, Any]:
    return trainer.data_collator([trainer.train_dataset[i] for i in indices])  # type: ignore[no-any-return]


def test_the_dataset_and_the_batches_say_which_rows_are_replayed(
    tiny: tuple[Any, Any],
    tmp_path: Path,
) -> None:
    trainer = _trainer(tiny, tmp_path, "kl")
    assert trainer.train_dataset[REPLAY_COLUMN] == [0] * 6 + [1] * 2
    batch = _batch(trainer, [0, 6, 7])
    assert batch[REPLAY_COLUMN].tolist() == [0, 1, 1]
    assert {"input_ids", "labels", "attention_mask"} <= batch.keys()


def test_replay_rows_cost_nothing_until_the_adapter_changes_them(
    tiny: tuple[Any, Any],
    tmp_path: Path,
) -> None:
    trainer = _trainer(tiny, tmp_path, "kl")
    model = trainer.model
    model.train(False)  # no dropout: the same forward both ways
    with torch.no_grad():
        # A fresh LoRA adapter (B = 0) is the base model: KL zero on replay rows...
        only_replay = trainer.compute_loss(model, _batch(trainer, [6, 7]))
        assert float(only_replay) == pytest.approx(0.0, abs=1e-6)
        # ...and the others keep their cross-entropy, over all the batch's labelled positions.
        mixed = _batch(trainer, [0, 6])
        labels = mixed["labels"]
        logits = model(input_ids=mixed["input_ids"], attention_mask=mixed["attention_mask"]).logits
        ce = torch.nn.functional.cross_entropy(
            logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum"
        )
        expected = ce / (labels[:, 1:] != -100).sum()
        assert float(trainer.compute_loss(model, mixed)) == pytest.approx(float(expected), rel=1e-4)
        # Once the adapter moves, the replay rows are pulled back: a positive KL.
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.05 * torch.randn_like(param))
        assert float(trainer.compute_loss(model, _batch(trainer, [6, 7]))) > 1e-4


def test_a_run_trains_with_either_replay_loss(tiny_dir: Path, tmp_path: Path) -> None:
    for loss in ("kl", "ce"):
        fresh = load_base_model(tiny_dir, tmp_path / "cache", device="cpu", dtype="float32")
        trainer = _trainer(fresh, tmp_path / loss, loss, steps=3)
        result = trainer.train()
        assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))


def test_an_unknown_replay_loss_is_refused() -> None:
    from genesys.errors import ConfigError

    with pytest.raises(ConfigError, match="replay_loss must be one of ce, kl"):
        TrainingConfig(replay_loss="mse")  # type: ignore[arg-type]
