"""Shared-prefix SFT on a tiny random-weight llama: the prompt every row starts with runs once, and the
loss and gradients are those of the usual full-batch forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import to_dataset, tokenize_chat_rows, with_system_prompt
from genesys.tools.training.hyperparameters import choose_hyperparameters
from genesys.tools.training.sft import build_sft_trainer
from genesys.tools.training.shared_prefix import MIN_SHARED_TOKENS, shared_prefix_length
from tests.support.tiny_llama import chat_rows

SYSTEM = (
    "You are Genesys , a coding assistant that runs inside the user's IDE . Answer programming questions "
    "directly and correctly ; prefer short , working code ."
)


def _trainer(tiny: tuple[Any, Any], tmp_path: Path, *, shared: bool) -> Any:
    model, tokenizer = tiny
    messages = [with_system_prompt(r["messages"], SYSTEM) for r in chat_rows(8)]
    rows = tokenize_chat_rows(tokenizer, messages, max_length=512)
    config = TrainingConfig(max_steps=4, lora_dropout=0.0)
    hp = choose_hyperparameters(8, sum(len(r.input_ids) for r in rows), config)
    return build_sft_trainer(
        model, tokenizer, to_dataset(rows), None, hp, config, tmp_path / "out", shared_prefix=shared
    )


def _batch(trainer: Any, indices: list[int]) -> dict[str, Any]:
    batch: dict[str, Any] = trainer.data_collator([trainer.train_dataset[i] for i in indices])
    return batch


def test_the_shared_prefix_stops_before_the_first_difference_and_the_first_label() -> None:
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 5, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])
    no_labels = torch.full_like(ids, -100)
    assert shared_prefix_length(ids, mask, no_labels) == 3  # rows differ at index 3
    labels = no_labels.clone()
    labels[0, 2] = 3  # the token at index 2 is predicted at index 1: the prefix ends before that
    assert shared_prefix_length(ids, mask, labels) == 1
    same = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    assert shared_prefix_length(same, torch.ones_like(same), torch.full_like(same, -100)) == 3  # one left
    assert shared_prefix_length(ids[:1], mask[:1], no_labels[:1]) == 0  # one row: nothing to share
    padded = torch.tensor([[1, 2, 0], [1, 2, 0]])
    padding = torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert shared_prefix_length(padded, padding, torch.full_like(padded, -100)) == 2  # never into padding


def test_rows_with_a_system_prompt_share_it(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    trainer = _trainer(tiny, tmp_path, shared=True)
    batch = _batch(trainer, [0, 1, 2, 3])
    prefix = shared_prefix_length(batch["input_ids"], batch["attention_mask"], batch["labels"])
    assert prefix >= MIN_SHARED_TOKENS
    # Everything before the prefix's end is the system turn and the opening of the user's turn.
    assert (batch["labels"][:, : prefix + 1] == -100).all()


def test_loss_and_gradients_equal_the_full_forward(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    trainer = _trainer(tiny, tmp_path, shared=True)
    model = trainer.model
    model.train(True)  # the shared path runs in training only; dropout is 0
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh adapter has B = 0: move it so that A gets gradients too
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.05 * torch.randn_like(param))
    batch = _batch(trainer, [0, 1, 2, 3])
    lora = {name: p for name, p in model.named_parameters() if p.requires_grad}

    def loss_and_grads(shared: bool) -> tuple[float, dict[str, torch.Tensor]]:
        trainer.shared_prefix = shared
        model.zero_grad()
        loss = trainer.compute_loss(model, {k: v.clone() for k, v in batch.items()})
        loss.backward()
        return float(loss), {name: p.grad.detach().clone() for name, p in lora.items()}

    full_loss, full_grads = loss_and_grads(False)
    shared_loss, shared_grads = loss_and_grads(True)
    assert shared_loss == pytest.approx(full_loss, rel=1e-5)
    assert any(float(g.abs().max()) > 0 for g in full_grads.values())
    for name, grad in full_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_run_with_a_shared_prefix_trains_and_counts_its_tokens(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    trainer = _trainer(tiny, tmp_path, shared=True)
    result = trainer.train()
    assert result.global_step == 4 and torch.isfinite(torch.tensor(result.training_loss))
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert trainer._total_train_tokens >= tokens // 2  # every row's tokens counted, prefix included
