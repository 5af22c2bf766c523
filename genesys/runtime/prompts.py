"""Agent prompts: one markdown file per agent under ``prompts/``, re-read when the file changes.

A file that cannot be used (missing, empty, not UTF-8) is refused with a clear error while the last
good text stays in use. Each prompt has a version (a short hash of its text) that cycles record.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from genesys.errors import ConfigError

log = structlog.get_logger(__name__)
PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"
MAX_PROMPT_BYTES = 64 * 1024
ASSISTANT_PROMPT = "genesys"  # the assistant that serves IDE users: prompts/genesys.md


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    version: str


class PromptLibrary:
    def __init__(self, directory: Path = PROMPTS_DIR) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[float, Prompt]] = {}
        self._lock = threading.Lock()

    def _read(self, name: str, path: Path) -> Prompt:
        raw = path.read_bytes()
        if len(raw) > MAX_PROMPT_BYTES:
            raise ConfigError(f"prompt {path} is over {MAX_PROMPT_BYTES} bytes")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ConfigError(f"prompt {path} is not UTF-8 text") from exc
        if not text:
            raise ConfigError(f"prompt {path} is empty")
        return Prompt(name, text, hashlib.sha256(text.encode()).hexdigest()[:12])

    def get(self, name: str) -> Prompt:
        """The prompt ``name``; re-read if its file changed. Raises ``ConfigError`` if never readable."""
        path = self.directory / f"{name}.md"
        with self._lock:
            cached = self._cache.get(name)
            try:
                mtime = path.stat().st_mtime
            except OSError as exc:
                if cached:
                    log.error("prompt.unreadable", prompt=name, error=str(exc), kept=cached[1].version)
                    return cached[1]
                raise ConfigError(f"prompt file not found: {path}") from exc
            if cached and cached[0] == mtime:
                return cached[1]
            try:
                prompt = self._read(name, path)
            except (ConfigError, OSError) as exc:
                if cached:
                    log.error("prompt.refused", prompt=name, error=str(exc), kept=cached[1].version)
                    self._cache[name] = (mtime, cached[1])
                    return cached[1]
                raise ConfigError(str(exc)) from exc
            if cached:
                log.info("prompt.reloaded", prompt=name, version=prompt.version)
            self._cache[name] = (mtime, prompt)
            return prompt
