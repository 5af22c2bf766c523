"""``train_dataset``: the Trainer's tool. One curated dataset version in, one finished training run out.

The run trains on the version's ``train_set`` (SFT rows, and its preference rows when a corrective stage
is on), stops early on its ``validation_set``, and puts the assistant's current system prompt first in
every row, so that the adapter learns the answers in the context it will serve them in. The prompt's
version is recorded with the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from genesys.errors import InvalidRequest
from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary
from genesys.runtime.store.training_runs import TrainingRun
from genesys.tools.dataset_writer import split_dir
from genesys.tools.training.data import SFT_FILE

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import Store
    from genesys.tools.training.config import TrainingConfig
    from genesys.tools.training.runs import RunManager

Watcher = Callable[[TrainingRun], None]


def dataset_files(settings: Settings, version: str) -> tuple[Path, Path | None]:
    """(train dir, validation dir or None) of a dataset version; raises ``InvalidRequest``."""
    train = split_dir(settings.data_dir, "train", version)
    if not (train / SFT_FILE).is_file():
        raise InvalidRequest(f"dataset {version} has no training rows at {train / SFT_FILE}", param="dataset")
    validation = split_dir(settings.data_dir, "validation", version)
    has_validation = (validation / SFT_FILE).is_file() and (validation / SFT_FILE).stat().st_size > 0
    return train, validation if has_validation else None


def train_dataset(
    settings: Settings,
    store: Store,
    manager: RunManager,
    version: str,
    *,
    config: TrainingConfig | None = None,
    watch: Watcher | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    replay_path: Path | None = None,
) -> TrainingRun:
    """Train on dataset ``version`` and wait for the run to end; ``watch`` sees the run as it goes.

    ``replay_path`` holds replay rows (``genesys.tools.training.replay``) trained beside the version's.
    Returns the finished run (``succeeded``, ``failed`` or ``cancelled``: a failure is the run's state,
    not an exception). Raises ``NotFound`` for an unknown version, ``InvalidRequest`` for a version
    without training rows.
    """
    store.datasets.get(version)  # NotFound for an unknown version
    train, validation = dataset_files(settings, version)
    prompt = PromptLibrary().get(ASSISTANT_PROMPT)
    run = manager.start(
        train,
        validation_path=validation,
        dataset_version=version,
        config=config,
        system_prompt=prompt.text,
        replay_path=replay_path,
    )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not run.finished:
        if watch is not None:
            watch(run)
        if deadline is not None and time.monotonic() > deadline:
            return manager.cancel(run.id)
        try:
            run = manager.wait(run.id, timeout=poll_s)
        except TimeoutError:
            run = manager.get(run.id)
    if watch is not None:
        watch(run)
    return run
