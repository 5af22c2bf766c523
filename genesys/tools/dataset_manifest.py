"""The record of a dataset version: the parameters that made it, what each stage kept and dropped, the
source interactions of each split and the content hash of each file (``manifest.json``).

``CurationParams`` holds everything that decides a dataset's content apart from the source
interactions and their feedback: the request's knobs and the settings they read. Its hash is the
version's ``config_hash``; a rebuild reads the parameters back from the manifest rather than from
today's settings.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genesys.tools.curation_examples import Criterion
from genesys.tools.dataset_selection import SPLITS, Split

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


class SplitRatios(BaseModel):
    """Shares of the examples per split; they must sum to 1."""

    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split ratios must sum to 1, got {total:g}")
        if self.train <= 0:
            raise ValueError("the train split needs a positive share")
        return self

    def as_dict(self) -> dict[Split, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


class CurationParams(BaseModel):
    """Everything that decides a dataset's content, given its source interactions."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    filter_criteria: list[Criterion]
    tag_categories: list[str]
    quality_threshold: float
    discard_threshold: float
    include_standard: bool
    include_system_prompt: bool
    dedupe_threshold: float
    balance_factor: float | None
    split_ratios: SplitRatios
    max_message_chars: int
    max_row_chars: int
    embedding_model: str
    paraphrases: int = Field(0, description="Rewrites of each corrected question added to the train split.")

    def config_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


class StageCounts(BaseModel):
    """What each stage of curation kept and dropped (counts of interactions unless said otherwise)."""

    selected: int = 0
    filtered_out: dict[str, int] = Field(
        default_factory=dict, description="By reason: not_chat, not_analyzed, invalid, or a criterion."
    )
    kto_only: dict[str, int] = Field(
        default_factory=dict,
        description="Kept only as undesirable KTO completions, by why their answer is no SFT target.",
    )
    after_filters: int = 0
    duplicates_removed: int = 0
    balanced_out: dict[str, int] = Field(default_factory=dict, description="By category.")
    kept: int = 0
    texts: int = Field(0, description="Texts prepared (messages, targets, answers).")
    scrubbed_texts: int = Field(0, description="Texts in which something was replaced.")
    redactions: dict[str, int] = Field(default_factory=dict, description="Replacements by kind.")
    truncated_texts: int = 0
    dropped_history_messages: int = 0


class SplitCounts(BaseModel):
    interactions: int = 0
    conversations: int = 0
    sft: int = 0
    preference: int = 0
    kto: int = 0
    by_category: dict[str, int] = Field(default_factory=dict)


class DatasetCounts(BaseModel):
    stages: StageCounts
    splits: dict[Split, SplitCounts]
    by_category: dict[str, int]


class FileRecord(BaseModel):
    path: str = Field(description="Relative to the data directory.")
    sha256: str
    bytes: int
    rows: int


class DatasetManifest(BaseModel):
    """The manifest.json of a dataset version."""

    model_config = ConfigDict(extra="forbid")

    format: int = MANIFEST_FORMAT
    version: str
    created_at: datetime
    curator_version: str
    scrubber_version: str
    analyzer_versions: list[str]
    library_versions: dict[str, str]
    config_hash: str
    seed: int
    params: CurationParams
    selection: dict[str, Any] = Field(description="How the source interactions were chosen (informational).")
    selected_ids: list[str] = Field(description="Every interaction considered, sorted: the rebuild's input.")
    split_ids: dict[Split, list[str]] = Field(description="Source interaction ids of each split, sorted.")
    counts: DatasetCounts
    files: dict[str, FileRecord] = Field(
        description="By logical name (train/sft.jsonl, processed/curated.jsonl)."
    )
    content_hash: str = Field(description="sha256 over the files' hashes: equal for byte-identical datasets.")
    rebuilt_from: str | None = None


def canonical_json(value: Any) -> str:
    """One serialisation for hashing and rows: sorted keys, no spaces, ASCII only.

    ASCII keeps U+2028, U+0085 and friends escaped, so a JSONL line can never be split by a reader
    that splits on Unicode line breaks (``str.splitlines``).
    """
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def empty_split_counts() -> dict[Split, SplitCounts]:
    return {split: SplitCounts() for split in SPLITS}
