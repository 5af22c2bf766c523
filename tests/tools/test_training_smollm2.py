"""A real, short training run on SmolLM2-135M (the embedded GGUF's weights) through ``RunManager``.

16 Fernwick corrections, 30 optimizer steps: the run must succeed, report progress while it trains,
learn (the training loss falls well below where it started) and leave an adapter that peft loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genesys.runtime.store import Store
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.runs import RunManager
from tests.support.tiny_llama import chat_rows, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded GGUF dequantized once (as the training base is), shared by this module's runs."""
    from genesys.runtime.base_model import _cached_gguf_copy
    from genesys.runtime.engines.llamacpp import embedded_model_path

    return _cached_gguf_copy(embedded_model_path(), tmp_path_factory.mktemp("model-cache"))


@pytest.fixture()
def manager(settings: Any) -> Iterator[RunManager]:
    manager = RunManager(settings, store=Store(settings.database_url).training_runs)
    yield manager
    manager.close()  # no worker outlives its test


@pytest.mark.timeout(1500)
def test_a_short_smollm2_run_learns_the_corrections(
    settings: Any, manager: RunManager, smollm2_dir: Path, tmp_path: Path
) -> None:
    store = Store(settings.database_url)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(16))
    config = TrainingConfig.from_settings(settings, max_steps=30)

    run = manager.start(train, dataset_version="fernwick-16", base_model=smollm2_dir, config=config)
    run = manager.wait(run.id, timeout=1200)

    assert run.state == "succeeded", run.error
    assert run.hyperparameters is not None
    # 16 rows: the learning rate and epochs of small data, and steps small enough to make progress.
    assert run.hyperparameters["learning_rate"] == pytest.approx(1e-3)
    assert run.hyperparameters["total_steps"] == 30
    progress = store.training_runs.progress(run.id)
    losses = [p.loss for p in progress if p.loss is not None]
    assert len(losses) >= 10
    assert all(p.tokens_per_s and p.tokens_per_s > 0 for p in progress)
    # The corrections are learned: the loss on the answers falls to well under half its start
    # (averaged over 5 steps: one step of 2 rows is noisy).
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert run.metrics is not None and run.metrics["sft"]["steps"] == 30

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, local_files_only=True)
    adapted = PeftModel.from_pretrained(base, run.adapter_dir)
    assert adapted.peft_config["default"].r == 16
