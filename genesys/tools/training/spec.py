"""``RunSpec``: everything the worker subprocess needs, written as JSON into the run's directory.

The worker reads nothing else (no settings file, no environment), so a run can be repeated from its
spec alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SPEC_FILE = "spec.json"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "worker.log"
RESULT_FILE = "run.json"


class RunSpec(BaseModel):
    """One training run, as asked."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1)
    database_url: str = Field(description="The store, where the run's row and progress live.")
    output_dir: Path = Field(description="The run's own directory; the only place the worker writes.")
    train_path: Path = Field(description="Chat JSONL file or directory of the training set.")
    validation_path: Path | None = Field(None, description="Chat JSONL of the validation set, if any.")
    preference_path: Path | None = Field(
        None, description="DPO or KTO rows for the corrective stage (used when the config enables it)."
    )
    dataset_version: str | None = None
    replay_path: Path | None = Field(
        None,
        description="Replay rows (genesys.tools.training.replay): chat JSONL trained beside the training "
        "set, as they are (no system prompt added); they do not count towards the epochs chosen.",
    )
    system_prompt: str | None = Field(
        None,
        description="The assistant's system prompt, put first in every row that has none: the model "
        "learns the answers in the context it will serve them in.",
    )
    base_model: Path | None = Field(None, description="GGUF file or model dir; None: the embedded SmolLM2.")
    cache_dir: Path = Field(
        description="Where the dequantized GGUF is cached (settings data dir/cache/models)."
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', ...; several GPUs: set by accelerate.")
    dtype: str = "auto"
    n_devices: int = Field(1, ge=1, description="Processes `accelerate launch` starts (one per GPU).")
    training: dict[str, Any] = Field(default_factory=dict, description="TrainingConfig.to_dict().")
    inject_nan_at_step: int | None = Field(
        None, ge=1, description="Tests only: poison the adapter after this step, so the loss turns NaN."
    )

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / ADAPTER_DIR

    def write(self) -> Path:
        """Write ``spec.json`` into the run's directory, readable by its owner only (the database URL
        may hold a password)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / SPEC_FILE
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write(self.model_dump_json(indent=2))
        return path

    def public(self) -> dict[str, Any]:
        """The spec as JSON values without the database URL, for the runs table and logs."""
        return self.model_dump(mode="json", exclude={"database_url"})

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
