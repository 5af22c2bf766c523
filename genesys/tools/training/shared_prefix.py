"""Shared-prefix SFT: the tokens every row of a batch starts with go through the model once.

Every SFT row starts with the same tokens: the chat template's system turn holding the assistant's
system prompt, and the opening of the user's turn. On the learning benchmark that is 70 to 80 of a row's
110 to 150 tokens, so a batch of 4 rows computed the same prefix 4 times. Here the prefix is run once
(batch 1), its keys and values are broadcast to every row, and only the rest of each row runs in batch
(``shared_prefix_loss``). The loss and its gradients are the ones of the full batch: attention is causal,
so the prefix's states do not depend on what follows them, and the gradient reaching the prefix is the
sum of what every row sends back to it (``expand``).

It applies when the rows share at least ``MIN_SHARED_TOKENS`` real tokens before the first token that
carries a label, on one process (under DDP the model is trained the usual way: sharing has not been
tested there, and a GPU gains little from it); otherwise (one row, rows of different prompts) the batch
trains the usual way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Below this, one more forward call costs more than the tokens it saves.
MIN_SHARED_TOKENS = 16


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> int:
    """How many tokens at the start of every row can be computed once for the whole batch: equal in every
    row, real (attention 1), carrying no label, and followed by a token that carries none either (the
    prediction made at the prefix's last position is not computed with the rest). 0 for one row.
    """
    import torch

    rows, length = input_ids.shape
    if rows < 2 or length < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(0) & attention_mask.bool().all(0)
    common = length if bool(same.all()) else int(torch.argmin(same.to(torch.int8)))
    labelled = (labels != -100).any(0)
    first_label = int(torch.argmax(labelled.to(torch.int8))) if bool(labelled.any()) else length
    return max(0, min(common, first_label - 1, length - 1))


def shared_prefix_loss(
    model: Any, inputs: dict[str, torch.Tensor], prefix: int, num_items_in_batch: Any = None
) -> torch.Tensor:
    """The batch's mean token cross-entropy on its labels, with the first ``prefix`` tokens (see
    ``shared_prefix_length``) computed once. ``model``: the peft-wrapped causal LM whose forward takes
    TRL's ``fused_lm_head`` (``trl.trainer.utils.add_fused_lm_head``, which SFTTrainer adds). The sum
    is divided by ``num_items_in_batch`` when the Trainer counts the labelled tokens across accumulated
    batches, else by this batch's count.
    """
    import torch
    from transformers import DynamicCache

    input_ids, attention_mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    rows, length = input_ids.shape
    peft_model: Any = getattr(model, "module", model)  # unwrapped from DDP
    backbone = peft_model.get_base_model().base_model  # the decoder stack, LoRA layers included
    head = backbone(
        input_ids=input_ids[:1, :prefix], attention_mask=attention_mask[:1, :prefix], use_cache=True
    )
    shared = [
        (keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1)) for keys, values, *_ in head.cache
    ]
    cache = DynamicCache(ddp_cache_data=shared)
    # The state at position t predicts token t + 1: shift the labels of the rest by one.
    shifted = torch.full_like(labels[:, prefix:], -100)
    shifted[:, :-1] = labels[:, prefix + 1 :]
    positions = torch.arange(prefix, length, device=input_ids.device).unsqueeze(0).expand(rows, -1)
    outputs = model(
        input_ids=input_ids[:, prefix:],
        attention_mask=attention_mask,
        position_ids=positions,
        cache=cache,
        shift_labels=shifted,
        fused_lm_head=True,
    )
    count = num_items_in_batch if num_items_in_batch is not None else (shifted != -100).sum()
    return -outputs.log_probs.sum() / torch.as_tensor(count, device=outputs.log_probs.device).clamp(min=1)
