"""Supervised fine-tuning of a LoRA adapter with TRL's ``SFTTrainer``.

The rows come pre-tokenized from ``data.tokenize_chat_rows`` (labels ``-100`` everywhere but the
answer), so TRL uses our loss mask as it is and only pads, truncates and batches; batches hold rows of
similar length (``sampling.LengthBucketSampler``: a fifth less padding). The LoRA pair goes on
every linear projection of the blocks, never on embeddings or the output head, so the adapter stays
exportable to a GGUF LoRA for llama.cpp.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import REPLAY_COLUMN
from genesys.tools.training.hyperparameters import ChosenHyperparameters

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
    from trl import SFTConfig, SFTTrainer


def lora_config(config: TrainingConfig) -> LoraConfig:
    """peft's LoraConfig for the run: r, alpha, dropout and target modules from ``config``."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def drop_gguf_marker(model: PreTrainedModel) -> None:
    """Make a model dequantized from a GGUF trainable.

    transformers keeps a ``quantization_config`` of method "gguf" on such a model (and in the config
    of its safetensors copy) although its weights are plain floats, and the Trainer then refuses to
    train it. The marker is dropped; the weights are untouched.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    config_marker = getattr(model.config, "quantization_config", None)
    if config_marker is not None and not isinstance(config_marker, dict):
        config_marker = config_marker.to_dict()
    from_gguf = str(method).lower().endswith("gguf") or (config_marker or {}).get("quant_method") == "gguf"
    if not from_gguf:
        return
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # transformers' own way to forget the quantization
    elif hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for module in model.modules():
        module_config = getattr(module, "config", None)
        if getattr(module_config, "_is_quantized", False):
            module_config._is_quantized = False  # type: ignore[union-attr]


def mixed_precision(model: torch.nn.Module) -> dict[str, bool]:
    """bf16 (or fp16) autocast and pinned memory on a GPU; plain float32 on CPU, where autocast only
    slows training down."""
    import torch

    on_cuda = next(model.parameters()).device.type == "cuda"
    bf16 = on_cuda and torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": on_cuda and not bf16, "dataloader_pin_memory": on_cuda}


def sft_arguments(
    hp: ChosenHyperparameters,
    config: TrainingConfig,
    output_dir: Path,
    *,
    precision: dict[str, bool] | None = None,
    **overrides: Any,
) -> SFTConfig:
    """TRL's SFTConfig from the chosen hyperparameters.

    Settings that TRL or transformers default differently, and why:
    gradient checkpointing off unless asked (a third slower, and small models fit);
    ``logging_nan_inf_filter`` off (else a NaN loss is hidden from the NaN guard);
    no reporting integrations, no progress bar (progress goes to the runs table);
    only the adapter in checkpoints (optimizer states are never resumed from).
    """
    from trl import SFTConfig

    keep_best = hp.early_stopping_patience > 0
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": hp.batch_size,
        "per_device_eval_batch_size": hp.batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation,
        "learning_rate": hp.learning_rate,
        "num_train_epochs": hp.epochs,
        "max_steps": config.max_steps or -1,
        "warmup_steps": hp.warmup_steps,
        "lr_scheduler_type": "linear",
        "logging_steps": hp.logging_steps,
        "logging_nan_inf_filter": False,
        "eval_strategy": hp.evaluation_strategy,
        "eval_steps": hp.eval_steps,
        "save_strategy": hp.save_strategy,
        "save_steps": hp.save_steps,
        "save_total_limit": 2,
        "save_only_model": True,
        "load_best_model_at_end": keep_best,
        "metric_for_best_model": "eval_loss" if keep_best else None,
        "greater_is_better": False if keep_best else None,
        "gradient_checkpointing": config.gradient_checkpointing,
        "max_length": config.max_length,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
        "neftune_noise_alpha": config.neftune_noise_alpha,
        **(precision or {"bf16": False, "fp16": False, "dataloader_pin_memory": False}),
    }
    return SFTConfig(**(values | overrides))


def build_sft_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Any,
    eval_dataset: Any | None,
    hp: ChosenHyperparameters,
    config: TrainingConfig,
    output_dir: Path,
    *,
    callbacks: list[TrainerCallback] | None = None,
    shared_prefix: bool = True,
    **overrides: Any,
) -> SFTTrainer:
    """An SFTTrainer that wraps ``model`` in a fresh LoRA adapter; the base weights stay frozen.

    ``train_dataset``/``eval_dataset`` are pre-tokenized (``data.to_dataset``). With early stopping
    on, an ``EarlyStoppingCallback`` watches the validation loss. ``shared_prefix``: training batches run
    the prompt their rows share once (``shared_prefix.shared_prefix_loss``; the same loss and gradients).
    ``overrides`` go to the SFTConfig.
    """
    from transformers import EarlyStoppingCallback, PrinterCallback

    drop_gguf_marker(model)
    if tokenizer.pad_token is None:
        # Padding positions carry label -100 and attention 0, so any token will do; EOS is always there.
        tokenizer.pad_token = tokenizer.eos_token
    args = sft_arguments(hp, config, output_dir, precision=mixed_precision(model), **overrides)
    all_callbacks = list(callbacks or [])
    if hp.early_stopping_patience and eval_dataset is not None:
        all_callbacks.append(EarlyStoppingCallback(early_stopping_patience=hp.early_stopping_patience))
    trainer: SFTTrainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if hp.evaluation_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=all_callbacks,
        replay_loss=config.replay_loss,
        shared_prefix=shared_prefix,
    )
    # Without a progress bar transformers prints every log to stdout; progress goes to the store instead.
    trainer.remove_callback(PrinterCallback)
    return trainer


def replay_kl_loss(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], replay: torch.Tensor, num_items: Any = None
) -> torch.Tensor:
    """The loss of a batch that holds replay rows, with ``replay_loss: kl``.

    Rows whose ``replay`` flag is 0 (corrections) keep the usual loss, the cross-entropy of their labels.
    On replay rows (the serving model's own answers) the loss at each answer position is the KL divergence
    KL(p_base || p_adapted) over the whole vocabulary, p_base from the same model with the adapter
    disabled: zero, with a zero gradient, while the adapter changes nothing there, and growing with what
    it changes. Cross-entropy on the replayed tokens instead pushes their probability towards 1, a change
    of its own. Summed over the positions that carry labels and divided by their number (``num_items``
    when the Trainer counts them across accumulated batches).
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    forward = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    logits = model(**forward, use_cache=False).logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets != -100
    log_probs = F.log_softmax(logits, dim=-1)
    per_token = -log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    rows = replay.bool()
    peft_model: Any = getattr(model, "module", model)  # unwrapped from DDP
    with torch.no_grad(), peft_model.disable_adapter():
        base = peft_model(**{k: v[rows] for k, v in forward.items()}, use_cache=False).logits[:, :-1].float()
    base_log_probs = F.log_softmax(base, dim=-1)
    kl = (base_log_probs.exp() * (base_log_probs - log_probs[rows])).sum(-1)
    per_token = torch.where(rows.unsqueeze(-1), torch.zeros_like(per_token), per_token)
    per_token[rows] = kl
    count = num_items if num_items is not None else mask.sum()
    return (per_token * mask).sum() / torch.as_tensor(count, device=per_token.device).clamp(min=1)


class _ReplayFlag:
    """Wraps TRL's collator: takes each example's ``replay`` flag out (TRL's collator knows no such key)
    and puts the batch's flags back as a tensor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not examples or REPLAY_COLUMN not in examples[0]:
            return self.inner(examples)
        flags = [int(example[REPLAY_COLUMN]) for example in examples]
        batch = self.inner([{k: v for k, v in e.items() if k != REPLAY_COLUMN} for e in examples])
        batch[REPLAY_COLUMN] = torch.tensor(flags)
        return batch


def _trainer_class() -> Any:
    """SFTTrainer whose random order is ``LengthBucketSampler``'s (other strategies, such as the
    benchmark's ``sequential``, are transformers' own), whose replay rows are trained with
    ``replay_kl_loss`` when the run asks for it (``replay_loss: kl``), and whose training batches run
    the prompt their rows share once (``shared_prefix_loss``; ``shared_prefix=False``: the usual way)."""
    from trl import SFTTrainer

    from genesys.tools.training.sampling import LengthBucketSampler
    from genesys.tools.training.shared_prefix import (
        MIN_SHARED_TOKENS,
        shared_prefix_length,
        shared_prefix_loss,
    )

    class GenesysSFTTrainer(SFTTrainer):
        replay_loss: str = "ce"
        shared_prefix: bool = True

        def __init__(
            self, *args: Any, replay_loss: str = "ce", shared_prefix: bool = True, **kwargs: Any
        ) -> None:
            super().__init__(*args, **kwargs)
            self.replay_loss = replay_loss
            self.shared_prefix = shared_prefix
            self.data_collator = _ReplayFlag(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if self._signature_columns is not None and REPLAY_COLUMN not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, REPLAY_COLUMN]

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "random" or dataset is None:
                return super()._get_train_sampler(train_dataset)
            lengths = [len(ids) for ids in dataset["input_ids"]]
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return LengthBucketSampler(lengths, self._train_batch_size, seed=seed)

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            replay = inputs.pop(REPLAY_COLUMN, None)
            if self.replay_loss == "kl" and replay is not None and bool(replay.any()) and not return_outputs:
                return replay_kl_loss(model, inputs, replay, num_items_in_batch)
            prefix = 0
            # Gradient checkpointing keeps no cache in training: nothing to share the prefix through.
            # Under DDP (several processes) batches train the usual way (see shared_prefix).
            if (
                model.training
                and not return_outputs
                and self.shared_prefix
                and not self.args.gradient_checkpointing
                and self.accelerator.num_processes == 1
            ):
                prefix = shared_prefix_length(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
            if prefix < MIN_SHARED_TOKENS:
                return super().compute_loss(
                    model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
                )
            # TRL's own path counts the tokens trained (progress reports tokens/s from them).
            self._total_train_tokens += int(inputs["attention_mask"].sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return shared_prefix_loss(model, inputs, prefix, num_items_in_batch)

    return GenesysSFTTrainer
