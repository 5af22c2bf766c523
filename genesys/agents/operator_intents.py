"""What an operator's message to the Deploy agent asks for, read in code (the policy mode).

``read_message`` finds the intent (a question about the rollout, why a version failed, or a rollout
step) and the adapter version the message names. The rules are keywords, checked in an order that
keeps questions from becoming steps: "why did v3 roll back?" asks why, it does not roll back; "is v4
approved?" asks for the status. A step said with a negation ("don't roll back") is taken as no step.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Literal

from pydantic import BaseModel, Field

Intent = Literal["status", "explain", "start", "approve", "reject", "hold", "resume", "rollback", "help"]
STEPS: frozenset[str] = frozenset({"start", "approve", "reject", "hold", "resume", "rollback"})

# Checked in this order; the first that matches is the intent.
_PATTERNS: tuple[tuple[Intent, str], ...] = (
    ("help", r"^\s*(?:help|\?+|what can you do|commands)\s*[.!?]*\s*$|\bhelp\b"),
    ("explain", r"\b(?:why|what happened|what went wrong|explain|how come|reason for)\b"),
    ("rollback", r"\b(?:roll(?:ed|ing)?[\s-]*back|revert|undo)\b"),
    ("reject", r"\b(?:reject|refuse|decline|turn (?:it )?down)\b"),
    ("resume", r"\b(?:resume|unpause|unfreeze|continue|carry on|release the hold|lift the hold)\b"),
    ("approve", r"\b(?:approved?|go ahead|lgtm|ship it|green[\s-]*light|sign off)\b"),
    ("hold", r"\b(?:hold|pause|freeze)\b"),
    ("status", r"\b(?:status|state|progress|overview|report)\b"),
    # "roll out v4", "rollout v4", "start v4"; not the noun in "the rollout".
    ("start", r"\b(?:roll(?:ing)?[\s-]+out|start|deploy|launch)\b|\brollout\s+(?:of\s+)?[a-z]+[-_.]?\d"),
    (
        "status",
        r"\b(?:how(?:'s| is| are| does)|where|what(?:'s| is| are)|show|rollouts?|production|running|"
        r"arms?|a/b)\b",
    ),
)
_RULES = tuple((intent, re.compile(pattern, re.IGNORECASE)) for intent, pattern in _PATTERNS)
_QUESTION = re.compile(r"^\s*(?:is|are|was|were|did|does|do|has|have|what|how|where|when|which)\b", re.I)
_NEGATION = re.compile(r"\b(?:don'?t|do not|never|no need to|not now)\b", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_LIKE = re.compile(r"[a-z]+[-_.]?\d+[a-z0-9._-]*", re.IGNORECASE)


class ReadMessage(BaseModel):
    """An operator's message as the policy reads it."""

    intent: Intent
    understood: bool = Field(description="False when no rule matched (the intent is then help).")
    version: str | None = Field(None, description="A known adapter version the message names.")
    unknown_version: str | None = Field(
        None, description="A word that looks like a version (v9, r7) but names no known adapter."
    )
    negated: bool = Field(False, description="A step said with a negation: no step is taken.")


def named_versions(message: str, known: Collection[str]) -> tuple[str | None, str | None]:
    """The first known version the message names, and the first version-like word that is unknown."""
    by_fold = {name.casefold(): name for name in known}
    found = unknown = None
    for token in _TOKEN.findall(message):
        token = token.rstrip("._-")
        if token in known or token.casefold() in by_fold:
            found = found or by_fold.get(token.casefold(), token)
        elif _VERSION_LIKE.fullmatch(token):
            unknown = unknown or token
    return found, unknown


def read_message(message: str, known_versions: Collection[str]) -> ReadMessage:
    """The intent of ``message`` and the version it names (``known_versions``: the registry's)."""
    text = " ".join(message.split())
    version, unknown = named_versions(text, known_versions)
    intent = next((name for name, pattern in _RULES if pattern.search(text)), None)
    if intent is None:
        return ReadMessage(intent="help", understood=False, version=version, unknown_version=unknown)
    negated = False
    if intent in STEPS:
        if _QUESTION.match(text) and text.endswith("?"):
            intent = "status"  # "is v4 approved?" asks; it does not approve
        elif _NEGATION.search(text):
            negated = True
    return ReadMessage(
        intent=intent, understood=True, version=version, unknown_version=unknown, negated=negated
    )
