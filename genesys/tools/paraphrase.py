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
- words: common programming words swapped for near-synonyms (create/build, add/submit, start/launch,
  job/task, parallel/concurrent, settings/configuration, ...), one or two per rewrite;
- the answer's own words: a correction that says what it does ("Start a worker with `x`", "To add a
  job, call `y`") gives the question it answers ("How do I start a worker?").

Rewrites alternate between the kinds, so that the first few are as different as the rules allow.
They are not always idiomatic English; they are always the user's question, and the answer — the
user's correction — is unchanged.
"""

from __future__ import annotations

import re
from itertools import pairwise, zip_longest

# Swaps at word boundaries (the first occurrence only), for programming questions: each maps to words
# that keep the question's meaning in most sentences. General vocabulary, not any library's.
SYNONYMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("create", ("build", "set up", "make")),
    ("make", ("create",)),
    ("new", ("fresh",)),
    ("add", ("submit", "push", "put")),
    ("enqueue", ("submit", "add")),
    ("start", ("launch", "begin")),
    ("launch", ("start",)),
    ("run", ("execute", "process")),
    ("runs", ("executes", "processes")),
    ("stop", ("halt", "shut down")),
    ("delete", ("remove",)),
    ("remove", ("delete", "drop")),
    ("cancel", ("abort", "withdraw")),
    ("get", ("fetch", "retrieve")),
    ("read", ("fetch",)),
    ("result", ("output", "return value")),
    ("change", ("modify", "adjust")),
    ("set", ("configure", "control")),
    ("sets", ("controls", "configures")),
    ("configure", ("set up",)),
    ("list", ("show",)),
    ("see", ("check", "inspect")),
    ("check", ("inspect", "verify")),
    ("method", ("call", "function")),
    ("command", ("CLI command",)),
    ("parameter", ("argument", "option")),
    ("argument", ("parameter",)),
    ("option", ("setting", "flag")),
    ("flag", ("option",)),
    ("setting", ("option",)),
    ("settings", ("configuration",)),
    ("configuration", ("settings", "config")),
    ("job", ("task",)),
    ("jobs", ("tasks",)),
    ("task", ("job",)),
    ("tasks", ("jobs",)),
    ("by default", ("out of the box", "unless configured")),
    ("limit", ("maximum",)),
    ("error", ("exception",)),
    ("exception", ("error",)),
    ("in parallel", ("concurrently", "simultaneously")),
    ("concurrency", ("parallelism",)),
    ("at once", ("simultaneously",)),
    ("how many", ("the number of",)),
    ("statistics", ("stats", "metrics")),
    ("priority", ("importance", "urgency")),
    ("storage", ("store", "database")),
    ("store", ("keep", "save")),
    ("file", ("config file",)),
    ("version", ("release",)),
    ("print", ("show", "display")),
    ("waiting", ("pending", "queued")),
    ("pending", ("waiting", "queued")),
    ("periodic", ("recurring", "scheduled")),
)
# A corrected answer often says what it does before how: "Start a worker with `x`", "To add a job,
# call `y`". Such a clause is the question the correction answers, in the answer's own words.
_IMPERATIVE = re.compile(
    r"^(?P<verb>add|call|cancel|change|check|configure|create|delete|enable|give|install|list|make|pass|"
    r"print|read|register|remove|run|set|start|stop|use|wrap|write)\b(?P<rest>[^`:;]*?)"
    r"(?: with | by | using |: |; |`)",
    re.IGNORECASE,
)
_TO_CLAUSE = re.compile(r"^to (?P<goal>[^,`]+?),? (?:call|use|run|pass|set|wrap)\b", re.IGNORECASE)
_CALL_TO = re.compile(r"^call `[^`]+` to (?P<goal>[^,.;`]+)", re.IGNORECASE)
_YOU_DO = re.compile(r"^in (?P<lib>[\w.-]+),? you (?P<goal>[^`]+?) (?:with|by|using) ", re.IGNORECASE)

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


def _swap_once(question: str, word: str, alternative: str) -> str | None:
    match = re.search(rf"\b{re.escape(word)}\b", question, re.IGNORECASE)
    if match is None:
        return None
    replacement = _upper_first(alternative) if match.group(0)[:1].isupper() else alternative
    return question[: match.start()] + replacement + question[match.end() :]


def _swaps(question: str) -> list[str]:
    out: list[str] = []
    for word, alternatives in SYNONYMS:
        for alternative in alternatives:
            swapped = _swap_once(question, word, alternative)
            if swapped is not None:
                out.append(swapped)
    return out


def _double_swaps(question: str) -> list[str]:
    """Two different words swapped at once: further from the wording, same meaning."""
    present = [(w, alts[0]) for w, alts in SYNONYMS if re.search(rf"\b{re.escape(w)}\b", question, re.I)]
    out: list[str] = []
    for (first, first_alt), (second, second_alt) in pairwise(present):
        once = _swap_once(question, first, first_alt)
        twice = _swap_once(once, second, second_alt) if once is not None and second not in first_alt else None
        if twice is not None:
            out.append(twice)
    return out


def questions_from_answer(answer: str) -> list[str]:
    """The questions a corrected answer states it answers, in its own words ("Start a worker with
    `tend`" -> "How do I start a worker?"); none when its first sentence fits no rule."""
    sentence = re.split(r"(?<=[.!?])\s", answer.strip(), maxsplit=1)[0].strip()
    out: list[str] = []
    for pattern, build in (
        (_IMPERATIVE, lambda m: f"How do I {m.group('verb').lower()}{m.group('rest').rstrip()}?"),
        (_TO_CLAUSE, lambda m: f"How do I {m.group('goal').strip()}?"),
        (_CALL_TO, lambda m: f"How do I {m.group('goal').strip()}?"),
        (_YOU_DO, lambda m: f"How do I {m.group('goal').strip()} in {m.group('lib')}?"),
    ):
        match = pattern.match(sentence)
        if match is not None:
            question = build(match)
            if len(question.split()) >= 5 and "`" not in question:
                out.append(question)
    return out


def paraphrase_question(
    question: str, n: int, *, avoid: set[str] | None = None, answer: str | None = None
) -> list[str]:
    """Up to ``n`` rewrites of ``question``, none equal (ignoring case and end punctuation) to it or to
    a string in ``avoid`` (the other phrasings already in the data, which the caller should extend
    with what it keeps). With the corrected ``answer``, the question it states it answers comes first.
    """
    if n <= 0 or not question.strip():
        return []
    seen = {_core(q).casefold() for q in (avoid or set())} | {_core(question).casefold()}
    derived = questions_from_answer(answer) if answer else []
    frames, swaps, doubles = _frames(question), _swaps(question), _double_swaps(question)
    # A swap inside a frame too, so that a question with few rules still gets varied rewrites.
    mixed = [s for f in frames[:2] for s in _double_swaps(f)[:1] + _swaps(f)[:1]]
    out: list[str] = []
    for candidates in [derived, *zip_longest(doubles, frames, mixed, swaps)]:
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
