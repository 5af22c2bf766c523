"""``paraphrase_question``: the Curator's offline enrichment of corrected questions.

A small model that learns a correction from the three ways a few users asked a question answers those
three and little else: measured on SmolLM2-135M with 17 corrected facts asked three ways each, 94% of
the trained phrasings but 53% of unseen ones were answered right. More phrasings of the same question,
each paired with the same correction, teach the answer rather than the wording.

No model that paraphrases well runs here, so the rewrites are rules, deterministic (a dataset version
rebuilds byte for byte) and generic — nothing here knows any scenario:

- frames: "How do I X?" -> "What is the way to X?", "Show me how to X.", "I need to X. How?";
  "What/Which ...?" -> "Tell me ...", "Do you know ...?"; a leading "In <library>, ..." moved to the
  end ("... in <library>?");
- words: common programming verbs and nouns swapped for near-synonyms (create/build, add/submit,
  start/launch, job/task, function/call, ...), one swap per rewrite.

Rewrites alternate between the kinds, so that the first few are as different as the rules allow.
They are not always idiomatic English; they are always the user's question, and the answer — the
user's correction — is unchanged.
"""

from __future__ import annotations

import re
from itertools import zip_longest

# One-word swaps, applied at word boundaries (the first occurrence only). Chosen for programming
# questions; each maps to words that keep the question's meaning in most sentences.
SYNONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("create", ("build", "set up", "make")),
    ("new", ("fresh",)),
    ("add", ("submit", "push", "put")),
    ("enqueue", ("submit", "add")),
    ("start", ("launch", "begin")),
    ("launch", ("start",)),
    ("run", ("execute",)),
    ("runs", ("executes",)),
    ("stop", ("halt", "shut down")),
    ("delete", ("remove",)),
    ("remove", ("delete",)),
    ("cancel", ("abort",)),
    ("get", ("fetch", "obtain")),
    ("read", ("fetch",)),
    ("change", ("modify", "adjust")),
    ("set", ("configure",)),
    ("configure", ("set",)),
    ("list", ("show",)),
    ("function", ("call",)),
    ("method", ("call",)),
    ("job", ("task",)),
    ("jobs", ("tasks",)),
    ("task", ("job",)),
    ("tasks", ("jobs",)),
    ("default", ("standard",)),
    ("limit", ("maximum",)),
    ("error", ("exception",)),
    ("exception", ("error",)),
    ("failed", ("unsuccessful",)),
    ("file", ("config file",)),
    ("option", ("setting",)),
    ("setting", ("option",)),
    ("command", ("CLI command",)),
)
_HOW = re.compile(r"^(?:how (?:do|can|should|would) (?:i|you|we)|how to) (?P<rest>.+)$", re.IGNORECASE)
_WH = re.compile(r"^(?P<wh>what|which|where|when|who)\b(?P<rest>.*)$", re.IGNORECASE)
_IN_LIB = re.compile(
    r"^(?:in|with|using) (?:the )?(?P<lib>[\w.-]+)(?: library| package)?, (?P<rest>.+)$", re.IGNORECASE
)


def _core(question: str) -> str:
    return question.strip().rstrip("?.! ").strip()


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[:2].isupper() else text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _frames(question: str) -> list[str]:
    core = _core(question)
    out: list[str] = []
    where = ""  # " in <library>" when the question began with it: every rewrite keeps the library
    library = _IN_LIB.match(core)
    if library:
        core = library.group("rest")
        where = f" in {library.group('lib')}"
        out.append(f"{_upper_first(core)}{where}?")
    how = _HOW.match(core)
    if how:
        rest = how.group("rest") + where
        out += [f"What is the way to {rest}?", f"Show me how to {rest}.", f"I need to {rest}. How?"]
    if _WH.match(core):
        out += [f"Tell me {_lower_first(core)}{where}.", f"Do you know {_lower_first(core)}{where}?"]
    out.append(f"Quick question: {_lower_first(_core(question))}?")
    return out


def _swaps(question: str) -> list[str]:
    out: list[str] = []
    for word, alternatives in SYNONYMS:
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        match = pattern.search(question)
        if match is None:
            continue
        for alternative in alternatives:
            replacement = _upper_first(alternative) if match.group(0)[:1].isupper() else alternative
            out.append(question[: match.start()] + replacement + question[match.end() :])
    return out


def paraphrase_question(question: str, n: int, *, avoid: set[str] | None = None) -> list[str]:
    """Up to ``n`` rewrites of ``question``, none equal (ignoring case and end punctuation) to it or to
    a string in ``avoid`` (the other phrasings already in the data)."""
    if n <= 0 or not question.strip():
        return []
    seen = {_core(q).casefold() for q in (avoid or set())} | {_core(question).casefold()}
    frames, swaps = _frames(question), _swaps(question)
    # A swap inside a frame too, so that a question with few rules still gets varied rewrites.
    mixed = [s for f in frames[:2] for s in _swaps(f)[:2]]
    out: list[str] = []
    for candidates in zip_longest(frames, swaps, mixed):
        for candidate in candidates:
            if candidate is None:
                continue
            key = _core(candidate).casefold()
            if key in seen:
                continue
            seen.add(key)
            out.append(candidate)
            if len(out) == n:
                return out
    return out
