"""The seed's raw layout: ``data/raw/{conversations,code_analysis,debugging,explanations}/``.

Each interaction is appended, after its commit, as one JSON line to
``data/raw/<folder>/<YYYY-MM-DD>.jsonl``; the store stays the source of truth and
``export_raw`` rebuilds the files from it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from genesys.runtime.store import Interaction, InteractionStore, InteractionType

RAW_FOLDERS: dict[InteractionType, str] = {
    "chat": "conversations",
    "code": "code_analysis",
    "debug": "debugging",
    "explanation": "explanations",
}


class RawExporter:
    """Appends interactions to the raw JSONL files; safe to call from several threads."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "raw"
        self._lock = threading.Lock()
        for folder in RAW_FOLDERS.values():
            (self.root / folder).mkdir(parents=True, exist_ok=True)

    def path_for(self, interaction: Interaction) -> Path:
        day = interaction.created_at.strftime("%Y-%m-%d")
        return self.root / RAW_FOLDERS[interaction.interaction_type] / f"{day}.jsonl"

    def append(self, interaction: Interaction) -> Path:
        path = self.path_for(interaction)
        line = interaction.model_dump_json() + "\n"
        with self._lock, path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        return path


def export_raw(store: InteractionStore, data_dir: Path, *, batch: int = 1000) -> int:
    """Rewrite every raw file from the store; returns how many interactions were written."""
    exporter = RawExporter(data_dir)
    for folder in RAW_FOLDERS.values():
        for old in (exporter.root / folder).glob("*.jsonl"):
            old.unlink()
    written = 0
    while True:
        page = store.list(limit=batch, offset=written)
        for interaction in page:
            exporter.append(interaction)
        written += len(page)
        if len(page) < batch:
            return written
