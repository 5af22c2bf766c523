"""Training runs as subprocesses (``RunManager`` + the worker) on a tiny random-weight llama.

Each run is a real ``python -m genesys.tools.training.worker`` process: success with progress rows and
a saved adapter, a bad data set, a NaN loss, a cancel, a ``kill -9``. None of them may touch what
serves: the registry and ``data/adapters`` stay as they were.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import InvalidRequest
from genesys.runtime.store import Store
from genesys.runtime.store.adapters import AdapterVersion
from genesys.runtime.store.training_runs import TrainingRun
from genesys.tools.training.adapter_files import register_run_adapter
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.runs import RunManager, worker_command
from tests.support.tiny_llama import chat_rows, write_jsonl

RUN_TIMEOUT_S = 300


@pytest.fixture()
def store(settings: Any) -> Store:
    return Store(settings.database_url)


@pytest.fixture()
def manager(settings: Any, store: Store) -> Iterator[RunManager]:
    manager = RunManager(settings, store=store.training_runs, grace_s=5)
    yield manager
    manager.close()  # no worker outlives its test


@pytest.fixture()
def data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "train_set" / "v1" / "train.jsonl", chat_rows(8)),
        "validation": write_jsonl(tmp_path / "validation_set" / "v1" / "val.jsonl", chat_rows(4, phrasing=1)),
    }


def _long_config() -> TrainingConfig:
    # Thousands of one-row steps: a run that is still training when the test stops it.
    return TrainingConfig(
        adapt_to_data=False, epochs=5000, batch_size=1, gradient_accumulation=1, logging_steps=1
    )


def _wait_for(condition: Callable[[], bool], timeout: float = RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def _training(manager: RunManager, run_id: str) -> bool:
    run = manager.get(run_id)
    assert not run.finished, f"run ended early: {run.state} {run.error}"
    return bool(run.step)


def _install_production(store: Store, adapters_dir: Path) -> AdapterVersion:
    """A production adapter, as a previous cycle would have left it."""
    (adapters_dir / "v1").mkdir(parents=True)
    (adapters_dir / "v1" / "adapter_model.safetensors").write_bytes(b"weights")
    registry = store.adapters
    registry.register(
        AdapterVersion(version="v1", path=str(adapters_dir / "v1"), base_model="tiny"),
        actor="trainer",
        reason="earlier cycle",
    )
    registry.transition("v1", "validated", actor="validator", reason="passed")
    return registry.promote("v1", actor="deploy", reason="approved")


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


# -- fast ------------------------------------------------------------------------------------------


def test_one_device_runs_the_worker_module(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    assert worker_command(spec, python="/py") == ["/py", "-m", "genesys.tools.training.worker", str(spec)]


def test_several_gpus_go_through_accelerate_launch(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    command = worker_command(spec, n_devices=4, python="/py")

    assert command[:3] == ["/py", "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[command.index("--num_machines") + 1] == "1"
    assert int(command[command.index("--main_process_port") + 1]) > 0
    # The worker runs as a module in every process, with the spec as its only argument.
    assert command[-3:] == ["--module", "genesys.tools.training.worker", str(spec)]
    with pytest.raises(InvalidRequest, match="at least 1"):
        worker_command(spec, n_devices=0)


def test_a_worker_that_vanished_is_recorded_as_failed(manager: RunManager, store: Store) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.training_runs.create(TrainingRun(id="run-lost", output_dir="/nowhere"))
    store.training_runs.mark_running("run-lost", pid=gone.pid)

    assert manager.recover() == ["run-lost"]
    run = manager.wait("run-lost", timeout=5)
    assert run.state == "failed" and "gone" in (run.error or "")


# -- real worker processes -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_trains_reports_progress_and_saves_its_adapter(
    manager: RunManager, store: Store, settings: Any, tiny_dir: Path, data: dict[str, Path]
) -> None:
    replay = write_jsonl(data["train"].parent.parent / "replay.jsonl", chat_rows(3, phrasing=2))
    run = manager.start(
        data["train"],
        validation_path=data["validation"],
        dataset_version="ds-1",
        base_model=tiny_dir,
        replay_path=replay,
    )
    assert run.state == "running" and run.pid is not None
    # The spec: complete on disk for the worker (owner-only: the database URL may hold a password),
    # without the database URL in the runs table.
    spec_file = Path(run.output_dir) / "spec.json"
    assert spec_file.stat().st_mode & 0o777 == 0o600
    assert "database_url" not in run.spec and run.spec["train_path"] == str(data["train"].resolve())

    run = manager.wait(run.id, timeout=RUN_TIMEOUT_S)

    assert run.state == "succeeded", run.error
    assert run.error is None and run.finished_at is not None
    adapter = Path(run.adapter_dir or "")
    assert adapter == Path(run.output_dir) / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert not (Path(run.output_dir) / "checkpoints").exists()
    # The chosen hyperparameters and why.
    assert run.hyperparameters is not None and run.hyperparameters["learning_rate"] == pytest.approx(1e-3)
    assert any("8 rows is under 50" in reason for reason in run.reasons or [])
    # The replay rows are trained beside the 8 rows but do not choose the epochs.
    assert run.metrics is not None and (run.metrics["train_rows"], run.metrics["replay_rows"]) == (8, 3)
    assert any("3 replay rows" in reason for reason in run.reasons or [])
    # Progress: a row at every logging step, train and validation losses, speed and time left.
    progress = store.training_runs.progress(run.id)
    train_rows = [p for p in progress if p.loss is not None]
    assert len(train_rows) >= 5
    assert [p.step for p in train_rows] == sorted(p.step for p in train_rows)
    assert all(p.total_steps == run.hyperparameters["total_steps"] for p in train_rows)
    assert all(p.tokens_per_s and p.tokens_per_s > 0 for p in train_rows)
    assert all(p.eta_s is not None and p.epoch is not None for p in train_rows)
    assert any(p.eval_loss is not None for p in progress)
    assert run.metrics is not None and run.metrics["sft"]["steps"] == run.step
    assert run.eta_s == 0.0
    # Nothing was registered or put where adapters serve from.
    assert store.adapters.versions() == []
    assert not (settings.data_dir / "adapters").exists()

    # Registering is a separate step: the adapter becomes a candidate with its lineage and model card.
    version = register_run_adapter(store.adapters, run, settings.data_dir / "adapters")
    assert (version.version, version.state, version.run_id, version.dataset_version) == (
        "v1",
        "candidate",
        run.id,
        "ds-1",
    )
    files = sorted(p.name for p in (settings.data_dir / "adapters" / "v1").iterdir())
    # The peft files for transformers and vLLM, the GGUF export for llama.cpp, the lineage and card.
    assert files == [
        "README.md",
        "adapter.gguf",
        "adapter_config.json",
        "adapter_model.safetensors",
        "lineage.json",
    ]
    card = (settings.data_dir / "adapters" / "v1" / "README.md").read_text()
    assert run.id in card and "Why these hyperparameters" in card


@pytest.mark.slow
def test_a_bad_data_set_fails_the_run_with_the_reason(
    manager: RunManager, tiny_dir: Path, tmp_path: Path
) -> None:
    run = manager.start(tmp_path / "no-such-set.jsonl", base_model=tiny_dir)
    run = manager.wait(run.id, timeout=RUN_TIMEOUT_S)

    assert run.state == "failed"
    assert "InvalidRequest: data set not found" in (run.error or "")
    assert run.adapter_dir is None and not (Path(run.output_dir) / "adapter").exists()


@pytest.mark.slow
def test_a_nan_loss_fails_the_run_and_leaves_production_alone(
    manager: RunManager, store: Store, settings: Any, tiny_dir: Path, data: dict[str, Path]
) -> None:
    adapters_dir = settings.data_dir / "adapters"
    production = _install_production(store, adapters_dir)
    before = _snapshot(adapters_dir)
    config = TrainingConfig(max_steps=20, logging_steps=1)

    run = manager.start(data["train"], base_model=tiny_dir, config=config, inject_nan_at_step=2)
    run = manager.wait(run.id, timeout=RUN_TIMEOUT_S)

    assert run.state == "failed"
    assert "NonFiniteLoss: loss became nan at step 3" in (run.error or "")
    assert not (Path(run.output_dir) / "adapter").exists()
    assert store.adapters.production() == production
    assert [v.version for v in store.adapters.versions()] == ["v1"]
    assert _snapshot(adapters_dir) == before


@pytest.mark.slow
def test_cancel_stops_a_running_run(manager: RunManager, tiny_dir: Path, data: dict[str, Path]) -> None:
    run = manager.start(data["train"], base_model=tiny_dir, config=_long_config())
    _wait_for(lambda: _training(manager, run.id))
    with pytest.raises(TimeoutError):
        manager.wait(run.id, timeout=0.5)

    cancelled = manager.cancel(run.id)

    assert cancelled.state == "cancelled" and cancelled.error == "cancelled by request"
    assert cancelled.cancel_requested
    assert run.pid is not None and _gone(run.pid)
    assert not (Path(run.output_dir) / "adapter").exists()
    # Cancelling again changes nothing.
    assert manager.cancel(run.id).state == "cancelled"


@pytest.mark.slow
def test_a_killed_worker_fails_the_run(manager: RunManager, tiny_dir: Path, data: dict[str, Path]) -> None:
    run = manager.start(data["train"], base_model=tiny_dir, config=_long_config())
    _wait_for(lambda: _training(manager, run.id))
    assert run.pid is not None

    os.kill(run.pid, signal.SIGKILL)  # what the out-of-memory killer does
    run = manager.wait(run.id, timeout=30)

    assert run.state == "failed"
    assert run.error == "the worker was killed by SIGKILL (out of memory, or killed)"
    assert not (Path(run.output_dir) / "adapter").exists()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_the_corrective_stage_runs_after_sft_on_the_version_directory(
    manager: RunManager, store: Store, tiny_dir: Path, tmp_path: Path
) -> None:
    version = tmp_path / "train_set" / "ds-2"
    write_jsonl(version / "sft.jsonl", chat_rows(8))
    pairs = [
        {
            "prompt": row["messages"][:1],
            "chosen": row["messages"][1:],
            "rejected": [{"role": "assistant", "content": "I do not know fernwick ."}],
        }
        for row in chat_rows(8)
    ]
    write_jsonl(version / "preference.jsonl", pairs)
    config = TrainingConfig(corrective_stage="dpo", max_steps=4, preference_epochs=1)

    run = manager.wait(manager.start(version, base_model=tiny_dir, config=config).id, timeout=RUN_TIMEOUT_S)

    assert run.state == "succeeded", run.error
    assert run.metrics is not None and run.metrics["dpo"]["steps"] >= 1 and run.metrics["dpo"]["rows"] == 8
    assert {p.stage for p in store.training_runs.progress(run.id)} == {"sft", "dpo"}
    assert (Path(run.adapter_dir or "") / "adapter_model.safetensors").is_file()
    assert not (Path(run.adapter_dir or "") / "ref").exists()
