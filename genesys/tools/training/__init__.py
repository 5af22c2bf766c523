"""Training LoRA adapters: the Trainer agent's tools.

- ``config``: ``TrainingConfig``, what a run is asked to do (from the settings);
- ``hyperparameters``: ``choose_hyperparameters``, the values that fit the data, with reasons;
- ``data``: the JSONL sets and the answer-only loss mask;
- ``sft`` / ``preference``: TRL's SFT, DPO and KTO trainers on a peft LoRA adapter;
- ``worker``: the subprocess that trains one run; ``runs``: ``RunManager``, which starts and watches it;
- ``adapter_files``: a finished run's adapter into ``data/adapters/<version>/`` and the registry.

Importing this package is cheap: torch, transformers, peft and trl load inside the functions that use
them (``callbacks``, imported only by the worker, is the exception).
"""

from __future__ import annotations

from genesys.tools.training.adapter_files import register_run_adapter
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.hyperparameters import ChosenHyperparameters, choose_hyperparameters
from genesys.tools.training.runs import RunManager, worker_command
from genesys.tools.training.spec import RunSpec

__all__ = [
    "ChosenHyperparameters",
    "RunManager",
    "RunSpec",
    "TrainingConfig",
    "choose_hyperparameters",
    "register_run_adapter",
    "worker_command",
]
