"""Training and serving on a CUDA GPU: what CI's machines, which have none, cannot show.

- The training worker, a real subprocess, trains a tiny random-weight llama on the GPU as a run on a
  GPU machine does: bf16 weights under bf16 autocast, replay rows under the KL replay loss, then the
  DPO stage. It reports progress for both stages and saves a finite adapter that moved, and the base
  model's files stay as they were.
- The transformers engine serves that adapter on the GPU with the CPU's greedy tokens (float32 on
  both), and in bf16.

Skipped where torch sees no CUDA GPU, so they are not part of CI's count. On a GPU machine:
``pytest -m gpu --noconftest tests/gpu`` (the root conftest's live-server fixtures are not used here,
and ``--noconftest`` spares a training-only image the packages they import).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from genesys.runtime.engines.base import ChatMessage, GenerationParams  # noqa: E402
from genesys.runtime.settings import load_settings  # noqa: E402
from genesys.runtime.store import Store  # noqa: E402
from genesys.runtime.store.training_runs import TrainingProgress, TrainingRun  # noqa: E402
from genesys.tools.training.config import TrainingConfig  # noqa: E402
from genesys.tools.training.runs import RunManager  # noqa: E402
from tests.support.tiny_llama import chat_rows, make_tiny_llama, scenario_items, write_jsonl  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)"),
]

RUN_TIMEOUT_S = 300
GREEDY = GenerationParams(max_tokens=16, temperature=0.0)


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def gpu_run(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TrainingRun, list[TrainingProgress], dict[str, str]]]:
    root = tmp_path_factory.mktemp("gpu-run")
    wrong = {"role": "assistant", "content": "I do not know fernwick ."}
    preference = [
        {"prompt": row["messages"][:1], "chosen": row["messages"][1:], "rejected": [wrong]}
        for row in chat_rows(6)
    ]
    base_files = _digest(model_dir)
    with pytest.MonkeyPatch.context() as env:
        for var in [v for v in os.environ if v.startswith("GENESYS_")]:
            env.delenv(var)
        settings = load_settings(data_dir=root / "data")
        assert settings.model.transformers.device == "auto"  # a GPU machine's default: the GPU
        store = Store(settings.database_url)
        manager = RunManager(settings, store=store.training_runs, grace_s=5)
        try:
            run = manager.start(
                write_jsonl(root / "train.jsonl", chat_rows(8)),
                validation_path=write_jsonl(root / "validation.jsonl", chat_rows(4, phrasing=1)),
                preference_path=write_jsonl(root / "dpo.jsonl", preference),
                replay_path=write_jsonl(root / "replay.jsonl", chat_rows(3, phrasing=2)),
                base_model=model_dir,
                # Enough epochs at a high rate that the random model learns to say "fernwick".
                config=TrainingConfig(
                    adapt_to_data=False,
                    epochs=30,
                    learning_rate=5e-3,
                    batch_size=4,
                    gradient_accumulation=1,
                    warmup_steps=0,
                    lora_dropout=0.0,
                    replay_loss="kl",
                    corrective_stage="dpo",
                    preference_epochs=1,
                ),
            )
            run = manager.wait(run.id, timeout=RUN_TIMEOUT_S)
            yield run, store.training_runs.progress(run.id), base_files
        finally:
            manager.close()


def test_a_run_trains_on_the_gpu_in_bf16_with_kl_replay_and_dpo(
    gpu_run: tuple[TrainingRun, list[TrainingProgress], dict[str, str]], model_dir: Path
) -> None:
    from safetensors.torch import load_file

    run, progress, base_files = gpu_run
    log = Path(run.output_dir) / "worker.log"
    assert run.state == "succeeded", f"{run.error}\n{log.read_text()[-3000:] if log.exists() else ''}"
    metrics = run.metrics or {}
    assert (metrics["device"], metrics["dtype"], metrics["mixed_precision"]) == ("cuda:0", "bfloat16", "bf16")
    assert (metrics["train_rows"], metrics["replay_rows"]) == (8, 3)
    assert metrics["sft"]["steps"] >= 1 and metrics["dpo"]["steps"] >= 1, metrics
    # Progress of both stages, with speed.
    stages = {p.stage for p in progress if p.loss is not None}
    assert stages == {"sft", "dpo"}
    assert all(p.tokens_per_s and p.tokens_per_s > 0 for p in progress if p.stage == "sft" and p.loss)
    # The adapter: finite, moved from its zero-initialised B matrices; the base files untouched.
    weights = load_file(str(Path(run.adapter_dir or "") / "adapter_model.safetensors"))
    assert weights and all(bool(torch.isfinite(w).all()) for w in weights.values())
    assert any(bool(w.abs().sum() > 0) for name, w in weights.items() if "lora_B" in name)
    assert _digest(model_dir) == base_files


@pytest.fixture(scope="module")
def engines(
    model_dir: Path, gpu_run: tuple[TrainingRun, list[TrainingProgress], dict[str, str]]
) -> Iterator[dict[str, Any]]:
    from genesys.runtime.engines.transformers_engine import TransformersEngine

    adapter = Path(gpu_run[0].adapter_dir or "")
    made = {
        "cpu": TransformersEngine(model_dir, cache_dir=model_dir / "cache", device="cpu", dtype="float32"),
        "cuda": TransformersEngine(model_dir, cache_dir=model_dir / "cache", device="cuda", dtype="float32"),
        "cuda-bf16": TransformersEngine(model_dir, cache_dir=model_dir / "cache", device="cuda"),
    }
    for engine in made.values():
        engine.load()
        engine.load_adapter("v1", adapter)
    yield made
    for engine in made.values():
        engine.close()


def _greedy(engine: Any, prompt: str, adapter: str | None) -> str:
    return "".join(chunk.text for chunk in engine.stream_chat([ChatMessage("user", prompt)], GREEDY, adapter))


def test_the_engine_serves_the_adapter_on_the_gpu_as_on_the_cpu(engines: dict[str, Any]) -> None:
    prompts = [item["prompts"][0] for item in scenario_items()[:4]]
    for prompt in prompts:
        for adapter in (None, "v1"):
            assert _greedy(engines["cuda"], prompt, adapter) == _greedy(engines["cpu"], prompt, adapter)
    # The adapter learned the scenario's words (else the comparison above says little).
    assert all("fernwick" not in _greedy(engines["cuda"], p, None) for p in prompts)
    assert any("fernwick" in _greedy(engines["cuda"], p, "v1") for p in prompts)
    bf16 = engines["cuda-bf16"]
    assert next(bf16._base.parameters()).dtype == torch.bfloat16
    chunks = list(bf16.stream_chat([ChatMessage("user", prompts[0])], GREEDY, "v1"))
    assert chunks[-1].finish_reason in ("stop", "length") and "".join(c.text for c in chunks)
