"""The seed's interaction types (chat, code, debug, explanation), told apart at write time.

A cheap lexical rule, run on every request: the semantic category (coding, debugging, ...) is
assigned later by the Analyst with embeddings; this type only routes the raw export.
"""

from __future__ import annotations

import re

from genesys.runtime.store import InteractionType

_DEBUG = re.compile(
    r"traceback \(most recent call last\)|\b\w+(error|exception)\b|\bstack ?trace\b|\bsegfault\b|"
    r"\bdoesn'?t work\b|\bnot working\b|\bfails?\b|\bbug\b|\bcrash(es|ed)?\b|\bdebug",
    re.IGNORECASE,
)
_EXPLAIN = re.compile(
    r"^\s*(why|what is|what are|what's|how does|how do|explain|describe)\b|\bexplain\b|"
    r"\bdifference between\b|\bwhat does\b",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bimport \w+|\brefactor\b|\bwrite (a|an|the)?\s*\w*\s*"
    r"(function|class|script|test|code)\b|\bimplement\b|\bcode\b",
    re.IGNORECASE,
)


def classify_interaction(text: str) -> InteractionType:
    """Type of a request from its last user message: debug > explanation > code > chat."""
    if _DEBUG.search(text):
        return "debug"
    if _EXPLAIN.search(text):
        return "explanation"
    if _CODE.search(text):
        return "code"
    return "chat"
