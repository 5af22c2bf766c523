"""Writes interactions durably: the store first (committed), then the raw export.

Also derives what an interaction records about its request: the conversation it belongs to and the
context the IDE sent (system prompt, tools, files named in code blocks).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from typing import Any

import structlog

from genesys.runtime.chat_format import content_text
from genesys.runtime.metrics import Metrics
from genesys.runtime.raw_export import RawExporter
from genesys.runtime.store import Interaction, InteractionStore

log = structlog.get_logger(__name__)
# Continue and other IDEs attach files as fenced blocks whose info string names the path.
_FENCE_PATH = re.compile(r"^```[\w+-]*\s+([\w./\\-]+\.[\w]+)", re.MULTILINE)


def conversation_id_for(messages: list[dict[str, Any]], user: str | None, given: str | None) -> str:
    """The conversation a request belongs to.

    IDEs resend the whole history with every turn, so the first user message (with the user) names
    the conversation unless the client names it (``X-Genesys-Conversation-Id``).
    """
    if given:
        return given[:64]
    first = next((content_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
    digest = hashlib.sha256(f"{user or ''}\x00{first}".encode()).hexdigest()[:24]
    return f"conv-{digest}"


def ide_context(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
) -> dict[str, Any]:
    system = "\n\n".join(
        content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    )
    files: list[str] = []
    for m in messages:
        files.extend(_FENCE_PATH.findall(content_text(m.get("content"))))
    return {
        "system_prompt": system or None,
        "tools": tools or [],
        "files": sorted(set(files)),
        "params": {k: v for k, v in params.items() if v is not None},
    }


def last_user_text(messages: list[dict[str, Any]]) -> str:
    return next((content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


class InteractionLog:
    def __init__(
        self, store: InteractionStore, exporter: RawExporter, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.exporter = exporter
        self.metrics = metrics

    def record_sync(self, interaction: Interaction) -> None:
        self.store.record(interaction)
        if self.metrics is not None:
            self.metrics.observe_interaction(interaction)
        try:
            self.exporter.append(interaction)
        except OSError as exc:  # the store holds it; the raw file can be rebuilt with export_raw
            log.error("raw_export.failed", interaction_id=interaction.id, error=str(exc))

    async def record(self, interaction: Interaction) -> None:
        """Commit ``interaction``; when this returns it survives a crash of the process."""
        await asyncio.shield(asyncio.to_thread(self.record_sync, interaction))

    def record_in_background(self, interaction: Interaction) -> None:
        """Commit from a thread of its own, for callers that are being cancelled and cannot wait."""
        threading.Thread(target=self.record_sync, args=(interaction,), name="record", daemon=False).start()
