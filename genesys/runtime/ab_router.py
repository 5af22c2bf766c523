"""Chooses the model version that answers a request.

Production answers everyone unless a candidate is in test; then a stable hash of the user (or the
conversation, when the user is anonymous) sends ``traffic`` of them to the candidate, so that a user
never flips between arms.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

BASE_VERSION = "base"


@dataclass(frozen=True)
class Route:
    model_version: str
    adapter: str | None
    arm: str


@dataclass(frozen=True)
class Split:
    production: str = BASE_VERSION
    candidate: str | None = None
    traffic: float = 0.0


def _bucket(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _adapter(version: str) -> str | None:
    return None if version == BASE_VERSION else version


class AbRouter:
    """Thread-safe; ``set_split`` swaps arms atomically between two requests."""

    def __init__(self, split: Split | None = None) -> None:
        self._split = split or Split()
        self._lock = threading.Lock()

    @property
    def split(self) -> Split:
        return self._split

    def set_split(self, split: Split) -> None:
        if not 0.0 <= split.traffic <= 1.0:
            raise ValueError("traffic must be within [0, 1]")
        with self._lock:
            self._split = split

    def route(self, *, user: str | None, conversation_id: str) -> Route:
        split = self._split
        if split.candidate and split.traffic > 0 and _bucket(user or conversation_id) < split.traffic:
            return Route(split.candidate, _adapter(split.candidate), "candidate")
        return Route(split.production, _adapter(split.production), "production")

    def pinned(self, version: str) -> Route:
        """A request that names a version gets it, outside the test."""
        return Route(version, _adapter(version), "pinned")
