"""Training rows from examples, and the files of a dataset version on disk.

Rows (one JSON object a line, ASCII, keys sorted; nothing time-dependent inside, so a rebuild is
byte-identical):

- ``sft.jsonl``, OpenAI chat: ``{"messages": [..., {"role": "assistant", "content": target}]}``;
- ``preference.jsonl``, TRL's conversational preference format (DPO):
  ``{"prompt": [...], "chosen": [assistant correction], "rejected": [assistant original answer]}``;
- ``kto.jsonl``, TRL's conversational unpaired format (KTO):
  ``{"prompt": [...], "completion": [assistant message], "label": true|false}``.

Layout (the seed's), under the data directory::

    processed/curated/<version>.jsonl    kept examples after filters, scrubbing and de-duplication
    processed/tagged/<version>.jsonl     every selected interaction: annotation and curation decision
    processed/balanced/<version>.jsonl   the final examples with their split
    training/{train_set,validation_set,test_set}/<version>/{sft,preference,kto}.jsonl + manifest.json

Every file is written to a temporary name and renamed, and the manifests come last: a directory
without a manifest is an interrupted write, never a dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from genesys.tools.curation_examples import Example, Message
from genesys.tools.dataset_manifest import MANIFEST_NAME, FileRecord, canonical_json
from genesys.tools.dataset_selection import SPLITS, Split
from genesys.tools.paraphrase import paraphrase_question

SPLIT_DIRS: dict[Split, str] = {"train": "train_set", "validation": "validation_set", "test": "test_set"}
ROW_FILES = ("sft.jsonl", "preference.jsonl", "kto.jsonl")
PROCESSED_STAGES = ("curated", "tagged", "balanced")


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def sft_row(example: Example) -> dict[str, Any] | None:
    if example.target is None:
        return None
    return {"messages": [*example.prompt, *_assistant(example.target)]}


def paraphrased_sft_rows(example: Example, n: int, avoid: set[str]) -> list[dict[str, Any]]:
    """``n`` more SFT rows of a corrected example: its last question rewritten, the correction kept."""
    if n <= 0 or example.target_source != "correction" or example.target is None:
        return []
    *history, question = example.prompt
    rewrites = paraphrase_question(question["content"], n, avoid=avoid, answer=example.target)
    avoid.update(rewrites)  # another interaction on the same fact gets other rewrites
    return [
        {"messages": [*history, {"role": "user", "content": rewrite}, *_assistant(example.target)]}
        for rewrite in rewrites
    ]


def preference_row(example: Example) -> dict[str, Any] | None:
    if example.target_source != "correction" or example.target is None or example.answer is None:
        return None
    return {
        "prompt": example.prompt,
        "chosen": _assistant(example.target),
        "rejected": _assistant(example.answer),
    }


def kto_rows(example: Example) -> list[dict[str, Any]]:
    return [
        {"prompt": example.prompt, "completion": _assistant(text), "label": label}
        for text, label in example.kto_rows()
    ]


def curated_row(example: Example) -> dict[str, Any]:
    """An example as the processed files keep it (texts already scrubbed; no timestamps)."""
    return {
        "interaction_id": example.interaction_id,
        "conversation_id": example.conversation_id,
        "category": example.category,
        "topics": example.topics,
        "tier": example.tier,
        "quality_score": example.quality_score,
        "prompt": example.prompt,
        "target": example.target,
        "target_source": example.target_source,
        "answer": example.answer,
        "label": example.label,
    }


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> tuple[bytes, int]:
    """The rows as JSONL bytes, and how many."""
    lines = [canonical_json(row) for row in rows]
    return ("".join(f"{line}\n" for line in lines)).encode("ascii"), len(lines)


def relative_path(key: str, version: str) -> str:
    """Where the file of logical name ``key`` lies, relative to the data directory."""
    group, name = key.split("/", 1)
    if group == "processed":
        return f"processed/{name.removesuffix('.jsonl')}/{version}.jsonl"
    return f"training/{SPLIT_DIRS[group]}/{version}/{name}"  # type: ignore[index]


@dataclass
class PlannedFile:
    """One file of a version, serialised in memory before anything is written."""

    key: str
    data: bytes
    rows: int

    def record(self, version: str) -> FileRecord:
        return FileRecord(
            path=relative_path(self.key, version),
            sha256=hashlib.sha256(self.data).hexdigest(),
            bytes=len(self.data),
            rows=self.rows,
        )


@dataclass
class DatasetFiles:
    """All files of a version, keyed by logical name (``train/sft.jsonl``, ``processed/tagged.jsonl``).

    The bytes do not depend on the version id, which is derived from them (``content_hash``).
    """

    files: list[PlannedFile] = field(default_factory=list)

    def add(self, key: str, rows: Iterable[dict[str, Any]]) -> None:
        data, count = jsonl_bytes(rows)
        self.files.append(PlannedFile(key, data, count))

    def rows(self, key: str) -> int:
        return next(f.rows for f in self.files if f.key == key)

    def records(self, version: str) -> dict[str, FileRecord]:
        return {f.key: f.record(version) for f in sorted(self.files, key=lambda f: f.key)}

    def content_hash(self) -> str:
        """sha256 over the logical names and contents: equal for byte-identical datasets."""
        digest = hashlib.sha256()
        for planned in sorted(self.files, key=lambda f: f.key):
            digest.update(f"{planned.key}:{hashlib.sha256(planned.data).hexdigest()}\n".encode())
        return digest.hexdigest()


def split_dir(data_dir: Path, split: Split, version: str) -> Path:
    return data_dir / "training" / SPLIT_DIRS[split] / version


def plan_files(
    *,
    curated: Sequence[Example],
    tagged: Sequence[dict[str, Any]],
    final: Sequence[Example],
    assignment: dict[str, Split],
    paraphrases: int = 0,
) -> DatasetFiles:
    """Serialise every file of a version (rows in the order given). The train split's SFT file also
    gets ``paraphrases`` rewrites of each corrected question, after the original rows; the other splits
    never do (a rewrite of a training question would leak it into validation or test), and no rewrite
    is a question of any split."""
    files = DatasetFiles()
    files.add("processed/curated.jsonl", (curated_row(e) for e in curated))
    files.add("processed/tagged.jsonl", tagged)
    files.add(
        "processed/balanced.jsonl", (curated_row(e) | {"split": assignment[e.conversation_id]} for e in final)
    )
    for split in SPLITS:
        members = [e for e in final if assignment[e.conversation_id] == split]
        rows = [r for e in members if (r := sft_row(e))]
        if split == "train" and paraphrases:
            # Every split's questions: a rewrite equal to a held-out question would leak it.
            asked = {e.prompt[-1]["content"] for e in final}
            rows += [r for e in members for r in paraphrased_sft_rows(e, paraphrases, asked)]
        files.add(f"{split}/sft.jsonl", rows)
        files.add(f"{split}/preference.jsonl", (r for e in members if (r := preference_row(e))))
        files.add(f"{split}/kto.jsonl", (r for e in members for r in kto_rows(e)))
    return files


def order_examples(examples: Iterable[Example]) -> list[Example]:
    return sorted(examples, key=lambda e: (e.conversation_id, e.created_at, e.interaction_id))


def new_version_id(now: datetime, content_hash: str, taken: Any) -> str:
    """``ds-YYYYMMDD-HHMMSS-<8 hex of the content hash>``; ``-2``, ``-3``... when ``taken(id)``."""
    base = f"ds-{now:%Y%m%d-%H%M%S}-{content_hash[:8]}"
    candidate, attempt = base, 1
    while taken(candidate):
        attempt += 1
        candidate = f"{base}-{attempt}"
    return candidate


class VersionManifest(Protocol):
    """What ``write_version`` needs of a manifest: the curation manifest and the docs one both fit."""

    version: str

    def model_dump_json(self, *, indent: int | None = None) -> str: ...


def write_version(data_dir: Path, files: DatasetFiles, manifest: VersionManifest) -> Path:
    """Write every file, then the manifest into each split directory; returns the train manifest path.

    On any error, what this call created is removed again.
    """
    version = manifest.version
    created: list[Path] = [
        d
        for d in (split_dir(data_dir, s, version) for s in SPLITS)
        if not d.exists()  # only directories this call makes are removed on failure
    ]
    written: list[Path] = []
    try:
        for planned in files.files:
            target = data_dir / relative_path(planned.key, version)
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, planned.data)
            written.append(target)
        manifest_bytes = (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")
        paths = []
        for split in SPLITS:
            path = split_dir(data_dir, split, version) / MANIFEST_NAME
            _atomic_write(path, manifest_bytes)
            written.append(path)
            paths.append(path)
        return paths[0]
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for directory in created:
            shutil.rmtree(directory, ignore_errors=True)
        raise


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
