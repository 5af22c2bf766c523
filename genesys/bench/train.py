"""``genesys bench train``: training tokens/s of the Trainer's SFT path against a bare peft loop.

Both sides train a fresh LoRA adapter (the run's r / alpha / dropout, every linear projection) on the
same base weights, with the same batches (identical token ids, labels masking the first half of each
row like a prompt, every row ``seq_len`` tokens so nothing is padded), the same number of optimizer
steps, learning rate, warm-up and gradient clipping:

- **bare**: plain torch, ``get_peft_model`` + ``torch.optim.AdamW`` + a linear schedule, one
  forward/backward/step per batch;
- **trainer**: ``genesys.tools.training.sft.build_sft_trainer`` with the run's settings (logging
  every step through the progress callback and the NaN guard, as a real run reports), batches in
  order (``train_sampling_strategy="sequential"``).

Each side's first ``warmup_steps`` steps are not timed (allocator and kernel warm-up); tokens/s is
tokens of the timed steps over their wall time. On a GPU both sides run under the Trainer's mixed
precision (bf16 autocast, or fp16 with a gradient scaler) and the clock is read after a
``torch.cuda.synchronize``, so that queued kernels count towards the step that queued them.

Sides alternate bare/trainer, trainer/bare, ... so that drift in machine load hits both alike;
medians are reported. Target: trainer >= 0.95 x bare.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field

from genesys.bench.serve import NOISY_OTHER_CPU_PCT, _CpuMeter

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from genesys.tools.training.config import TrainingConfig

log = structlog.get_logger(__name__)

RATIO_TARGET = 0.95
Side = Literal["bare", "trainer"]


class SideRun(BaseModel):
    side: Side
    tokens_per_s: float
    step_ms_median: float = Field(description="Median wall time of one timed optimizer step.")
    timed_steps: int
    final_loss: float = Field(description="Loss of the last step (both sides see the same batches).")
    other_cpu_pct: float | None = Field(None, description="CPU taken by other processes meanwhile.")


class TrainBenchResult(BaseModel):
    model: str
    device: str
    torch_threads: int
    batch_size: int
    seq_len: int
    steps: int
    warmup_steps: int
    lora_rank: int
    repeats: int
    runs: list[SideRun]
    bare_tokens_per_s: float
    trainer_tokens_per_s: float
    ratio: float = Field(description="trainer / bare tokens/s (medians).")
    target: float = RATIO_TARGET
    passed: bool
    load_average: tuple[float, float] = Field(description="1-minute load average at start and at end.")
    other_cpu_pct_max: float | None = None


def run_train_bench(
    *,
    model_path: Path | None = None,
    cache_dir: Path | None = None,
    steps: int = 20,
    warmup_steps: int = 3,
    batch_size: int = 4,
    seq_len: int = 128,
    repeats: int = 1,
    device: str = "cpu",
    lora_rank: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.1,
) -> TrainBenchResult:
    """Measure both sides ``repeats`` times each (ABBA order); see the module docstring.

    ``model_path`` is a GGUF file or a model directory (default: the embedded SmolLM2); ``device`` is
    ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. Raises ``InvalidRequest`` for sizes below 1,
    ``EngineUnavailable`` when the model cannot be loaded or the device is not there.
    """
    import torch

    from genesys.errors import InvalidRequest
    from genesys.runtime.base_model import load_base_model, resolve_device
    from genesys.tools.training.config import TrainingConfig

    for name, value in (
        ("steps", steps),
        ("batch_size", batch_size),
        ("seq_len", seq_len),
        ("repeats", repeats),
    ):
        if value < 1:
            raise InvalidRequest(f"{name} must be at least 1", param=name)
    if warmup_steps < 0:
        raise InvalidRequest("warmup_steps must be >= 0", param="warmup_steps")
    device = resolve_device(device)
    cache = cache_dir or Path(tempfile.gettempdir()) / "genesys-bench-cache"
    base, tokenizer = load_base_model(model_path, cache, device=device, dtype="auto")
    total = warmup_steps + steps
    generator = torch.Generator().manual_seed(0)
    vocab = int(base.config.vocab_size)
    ids = torch.randint(0, vocab, (total * batch_size, seq_len), generator=generator)
    labels = ids.clone()
    labels[:, : seq_len // 2] = -100  # the "prompt" half carries no loss, as in SFT on answers
    config = TrainingConfig(
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        batch_size=batch_size,
        gradient_accumulation=1,
        learning_rate=1e-3,
        warmup_steps=0,
        max_steps=total,
        max_length=seq_len,
    )
    order: list[Side] = []
    for index in range(repeats):
        order += ["bare", "trainer"] if index % 2 == 0 else ["trainer", "bare"]
    load_start = os.getloadavg()[0]
    runs = []
    for side in order:
        model = copy.deepcopy(base)
        meter = _CpuMeter([os.getpid()])
        meter.start()
        if side == "bare":
            times, loss = _bare(model, ids, labels, config, batch_size)
        else:
            times, loss = _trainer(model, tokenizer, ids, labels, config, batch_size)
        runs.append(_side_run(side, times, warmup_steps, batch_size * seq_len, loss, meter.other_pct()))
        log.info("bench.train.side", side=side, tokens_per_s=round(runs[-1].tokens_per_s, 1))
        del model
    bare = statistics.median(r.tokens_per_s for r in runs if r.side == "bare")
    trainer = statistics.median(r.tokens_per_s for r in runs if r.side == "trainer")
    ratio = trainer / bare if bare else 0.0
    return TrainBenchResult(
        model=str(model_path or "embedded SmolLM2-135M-Instruct"),
        device=device,
        torch_threads=torch.get_num_threads(),
        batch_size=batch_size,
        seq_len=seq_len,
        steps=steps,
        warmup_steps=warmup_steps,
        lora_rank=lora_rank,
        repeats=repeats,
        runs=runs,
        bare_tokens_per_s=bare,
        trainer_tokens_per_s=trainer,
        ratio=ratio,
        passed=ratio >= RATIO_TARGET,
        load_average=(load_start, os.getloadavg()[0]),
        other_cpu_pct_max=max((r.other_cpu_pct for r in runs if r.other_cpu_pct is not None), default=None),
    )


def _side_run(
    side: Side, times: list[float], warmup: int, tokens_per_step: int, loss: float, other: float | None
) -> SideRun:
    """``times`` holds the clock at the start and after each step (len = steps + 1)."""
    timed = times[warmup:]
    steps = len(timed) - 1
    durations = [b - a for a, b in itertools.pairwise(timed)]
    return SideRun(
        side=side,
        tokens_per_s=steps * tokens_per_step / (timed[-1] - timed[0]),
        step_ms_median=1000 * statistics.median(durations),
        timed_steps=steps,
        final_loss=loss,
        other_cpu_pct=other,
    )


def _bare(
    model: PreTrainedModel, ids: torch.Tensor, labels: torch.Tensor, config: TrainingConfig, batch: int
) -> tuple[list[float], float]:
    """The reference: a plain peft loop. Returns the clock before and after each step, and the last loss."""
    import torch
    from peft import get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from genesys.tools.training.sft import lora_config, mixed_precision

    torch.manual_seed(config.seed)
    peft_model = get_peft_model(model, lora_config(config))
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    steps = ids.shape[0] // batch
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)
    device = next(peft_model.parameters()).device
    precision = mixed_precision(peft_model)
    half = torch.bfloat16 if precision["bf16"] else torch.float16 if precision["fp16"] else None
    scaler = torch.amp.GradScaler("cuda") if precision["fp16"] else None
    times = [_clock(device)]
    loss = torch.tensor(0.0)
    for step in range(steps):
        rows = slice(step * batch, (step + 1) * batch)
        with torch.autocast(device.type, dtype=half) if half is not None else contextlib.nullcontext():
            out = peft_model(input_ids=ids[rows].to(device), labels=labels[rows].to(device))
        loss = out.loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the Trainer clips at 1.0 too
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(_clock(device))
    return times, float(loss.detach())


def _clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device's queued work is done (CUDA runs asynchronously)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _trainer(
    model: PreTrainedModel,
    tokenizer: Any,
    ids: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    batch: int,
) -> tuple[list[float], float]:
    """The Trainer's SFT path on the same batches, in order. Returns step clocks and the last loss."""
    import datasets
    from transformers import TrainerCallback

    from genesys.tools.training.callbacks import NanGuard, ProgressCallback
    from genesys.tools.training.hyperparameters import choose_hyperparameters
    from genesys.tools.training.sft import build_sft_trainer

    times: list[float] = []
    losses: list[float] = []
    device = next(model.parameters()).device

    class _Clock(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not times:
                times.append(_clock(device))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            times.append(_clock(device))

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    datasets.disable_progress_bars()  # the table is the output; TRL's preparation bars are noise
    dataset = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    steps = ids.shape[0] // batch
    hp = choose_hyperparameters(
        ids.shape[0],
        ids.numel(),
        config.__class__.from_dict(config.to_dict() | {"adapt_to_data": False, "logging_steps": 1}),
    )
    with tempfile.TemporaryDirectory(prefix="genesys-bench-train-") as out:
        trainer = build_sft_trainer(
            model,
            tokenizer,
            dataset,
            None,
            hp,
            config,
            Path(out),
            callbacks=[ProgressCallback(lambda progress: None), NanGuard(), _Clock()],
            train_sampling_strategy="sequential",
            save_strategy="no",
            max_steps=steps,
        )
        trainer.train()
    return times, losses[-1] if losses else float("nan")


def format_table(result: TrainBenchResult) -> str:
    """A human-readable summary of the result."""
    lines = [
        f"genesys bench train: {result.model} on {result.device} ({result.torch_threads} threads), "
        f"batch {result.batch_size} x {result.seq_len} tokens, {result.steps} timed steps "
        f"(+{result.warmup_steps} warm-up), LoRA r {result.lora_rank}, {result.repeats} repeat(s)",
        "",
        f"{'side':<8} {'tokens/s':>10} {'step ms':>9} {'last loss':>10} {'others CPU %':>13}",
    ]
    for run in result.runs:
        other = "-" if run.other_cpu_pct is None else f"{run.other_cpu_pct:.0f}"
        lines.append(
            f"{run.side:<8} {run.tokens_per_s:>10.1f} {run.step_ms_median:>9.1f} {run.final_loss:>10.4f} "
            f"{other:>13}"
        )
    verdict = "PASS" if result.passed else "FAIL"
    lines += [
        "",
        f"median tokens/s: bare {result.bare_tokens_per_s:.1f}, trainer {result.trainer_tokens_per_s:.1f}; "
        f"ratio {result.ratio:.3f} (target >= {result.target}) {verdict}",
        f"load average: {result.load_average[0]:.2f} -> {result.load_average[1]:.2f}",
    ]
    if result.other_cpu_pct_max is not None and result.other_cpu_pct_max > NOISY_OTHER_CPU_PCT:
        lines.append(
            f"warning: other processes took up to {result.other_cpu_pct_max:.0f}% of the CPU during a side; "
            "the ratio is not trustworthy on a busy machine"
        )
    return "\n".join(lines)
