"""Implicit feedback: what the user's next message says about the previous answer.

IDEs resend the whole history with every turn, so a new request holds the previous request, the
previous answer and the new user message. When that message corrects or contradicts the answer
("no, in Vue 3 that's ...", "that's wrong", "actually ..."), the previous interaction gets a
``correction`` signal, with the right answer when the message states one; a pasted error or "it
still doesn't work" after a proposed fix is ``error_after_fix``; the same request sent again (a
regenerate) is ``regenerate``. All three are a thumbs-down, source ``implicit``, with the user's
text as evidence.

The rules are deliberately conservative: a missed signal costs little, a false one teaches the model
that a good answer was wrong.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from genesys.runtime.chat_format import content_text
from genesys.runtime.store import Feedback, Interaction, Store, utcnow
from genesys.tools.feedback import MAX_CORRECTION_CHARS, storable_text

ImplicitSignal = Literal["correction", "error_after_fix", "regenerate"]

# The same question asked again a day later is a new question, not a regenerate.
REGENERATE_WINDOW = timedelta(hours=1)
MAX_EVIDENCE_CHARS = 8_192
# Patterns run on the start of the message only: enough to see a correction, and bounded work on a
# hostile multi-megabyte message.
_SCAN_CHARS = 4_000
_MIN_CORRECTION_CHARS = 12

_PUNCT = r"[\s,.!:;—–-]*+"  # possessive: a lookahead after it cannot make it give back
_Q = "['’]?"  # users type both apostrophes
_SUBJECT = rf"(?:that{_Q}s|that is|this is|it{_Q}s|it is|you{_Q}re|you are|this was|that was|your answer is)"
# "no, ..." but not "no problem", "no thanks"; "não, ..." (Portuguese users) but not "não precisa".
_NO = re.compile(
    r"^(?:no|nope|nah|não|nao)(?:\s*[,.!:;—–-]++|\s*\n|\s*$)"
    r"(?!\s*(?:problem|worries|thanks|thank|need|precisa|obrigad))",
    re.IGNORECASE,
)
_WRONG_LEAD = re.compile(
    rf"^(?:(?:{_SUBJECT}\s+)?(?:wrong|incorrect|not (?:right|correct|quite))"
    rf"|{_SUBJECT}\s+(?:not (?:true|accurate)|outdated|deprecated|mistaken|false))\b" + _PUNCT,
    re.IGNORECASE,
)
_WRONG_LEAD_PT = re.compile(
    r"^(?:(?:isso|isto|está|esta|tá)\s+)*(?:errad[oa]|incorret[oa]|não é assim|nao e assim)\b" + _PUNCT,
    re.IGNORECASE,
)
_ACTUALLY = re.compile(
    r"^(?:actually|na verdade)\b"
    + _PUNCT
    + rf"(?!(?:can|could|would|will)\s+you\b|i\s|let{_Q}s\b|please\b|also\b)",
    re.IGNORECASE,
)
_WRONG_ANYWHERE = re.compile(
    rf"\b{_SUBJECT}\s+(?:wrong|incorrect|not (?:right|correct|true)|outdated)\b"
    r"|\b(?:isso|isto) (?:está|esta) errad[oa]\b",
    re.IGNORECASE,
)
_STATES_ANSWER = re.compile(
    r"\b(?:the (?:right|correct) (?:answer|way|syntax|code|version) is|it should be|you should use|"
    r"should be using|o correto é|o certo é|deveria ser)\b",
    re.IGNORECASE,
)
_PASTED_ERROR = re.compile(
    r"Traceback \(most recent call last\)"
    r"|^\s*(?:[\w$]+\.)*\w*(?:Error|Exception)\b(?::|\s*$)"
    r"|^\s*at [\w$.<>\[\]]+ \(.+:\d+(?::\d+)?\)"
    r"|\bnpm ERR!|\berror(?:\[E\d+\])?: |\berror TS\d+|^panic: |Segmentation fault|\bUncaught \w*Error"
    r"|exit (?:code|status) [1-9]|command not found|Cannot find module|undefined reference to",
    re.MULTILINE,
)
_STILL_FAILS = re.compile(
    rf"\b(?:doesn{_Q}t|does not|didn{_Q}t|did not|won{_Q}t)\s+(?:work|compile|run|build)\b"
    r"|\bnot working\b|\bstill (?:fails|failing|broken|crashes|crashing|the same error|getting)\b"
    r"|\bnão funcion(?:a|ou)\b|\bnao funcion(?:a|ou)\b|\b(?:continua|ainda) (?:dando |dá |da )?erro\b",
    re.IGNORECASE,
)
# A proposed fix: code, or an instruction to change something.
_PROPOSED_FIX = re.compile(
    r"```|^(?: {4}|\t)\S"
    r"|\b(?:try|replace|change|instead|fix|update|upgrade|install|use|add|remove|run|set|rename)\b",
    re.IGNORECASE | re.MULTILINE,
)


class ImplicitFeedback(BaseModel):
    """A signal about the previous answer, read from the next request."""

    interaction_id: str = Field(description="The previous interaction, the one the signal is about.")
    signal: ImplicitSignal
    evidence: str = Field(description="The user's text (or, for a regenerate, what was repeated).")
    correction: str | None = Field(None, description="The right answer, when the message states it.")
    fix_worked: bool | None = None


def _turns(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The conversation without system prompts (the IDE rebuilds those each turn), comparable."""
    out = []
    for message in messages:
        role = str(message.get("role"))
        if role in ("system", "developer"):
            continue
        calls = message.get("tool_calls")
        out.append((role, content_text(message.get("content")).strip(), json.dumps(calls, sort_keys=True)))
    return out


def _strip_leads(text: str) -> str:
    """The message without its "no, that's wrong, actually" lead-ins."""
    for _ in range(4):
        for lead in (_NO, _WRONG_LEAD, _WRONG_LEAD_PT, _ACTUALLY):
            match = lead.match(text)
            if match and match.end() > 0:
                text = text[match.end() :].lstrip()
                break
        else:
            return text
    return text


def _stated_answer(rest: str) -> str | None:
    """What is left after the lead-ins, when it reads as a statement and not as a question."""
    rest = rest.strip()
    if len(rest) < _MIN_CORRECTION_CHARS or rest.rstrip().endswith("?"):
        return None
    return rest[:MAX_CORRECTION_CHARS]


def _asks_question(answer: str) -> bool:
    lines = [line for line in answer.strip().splitlines() if line.strip()]
    return bool(lines) and lines[-1].rstrip().endswith("?")


def classify_followup(previous_answer: str, text: str) -> tuple[ImplicitSignal, str | None] | None:
    """Whether a user message following ``previous_answer`` corrects it (and the right answer, if it
    states one), reports that its fix failed, or neither."""
    head = text.strip()[:_SCAN_CHARS]
    if not head:
        return None
    proposed_fix = bool(_PROPOSED_FIX.search(previous_answer[: _SCAN_CHARS * 4]))
    if proposed_fix and (_PASTED_ERROR.search(head) or _STILL_FAILS.search(head)):
        return "error_after_fix", None
    # After "Shall I add tests?", "no, ..." answers the question; it does not correct anything.
    bare_no = _NO.match(head) is not None and not _asks_question(previous_answer)
    lead = bare_no or any(p.match(head) for p in (_WRONG_LEAD, _WRONG_LEAD_PT, _ACTUALLY))
    states_answer = _STATES_ANSWER.search(head) is not None
    if lead:
        return "correction", _stated_answer(_strip_leads(text.strip()))
    if _WRONG_ANYWHERE.search(head) or _STILL_FAILS.search(head):
        # "Hmm, I think that's outdated" says the answer is wrong, not what is right.
        return "correction", _stated_answer(text) if states_answer else None
    if states_answer:
        return "correction", _stated_answer(text)
    return None


def detect_implicit_feedback(
    previous: Interaction, messages: list[dict[str, Any]], *, now: datetime | None = None
) -> ImplicitFeedback | None:
    """What the request ``messages`` say about ``previous``, the conversation's last interaction.

    A regenerate is the same conversation sent again (system prompts aside) within
    ``REGENERATE_WINDOW``. Otherwise the request must continue ``previous`` (its messages, then the
    answer, then a new user message; or, from a client that names its conversation and sends only
    the new message, no history at all) and end with the user's message.
    """
    if previous.endpoint != "chat" or previous.status == "error":
        return None
    now = now or utcnow()
    before, after = _turns(previous.request_messages), _turns(messages)
    if after and after == before:
        if now - previous.created_at > REGENERATE_WINDOW:
            return None
        seconds = max(0, int((now - previous.created_at).total_seconds()))
        return ImplicitFeedback(
            interaction_id=previous.id,
            signal="regenerate",
            evidence=f"regenerated: the same {len(after)} messages were sent again {seconds} s later",
        )
    if not after or after[-1][0] != "user":
        return None
    continues = len(after) > len(before) and after[: len(before)] == before
    stateless = all(role != "assistant" for role, _, _ in after)
    if not (continues or stateless):
        return None
    text = after[-1][1]
    found = classify_followup(previous.answer, text)
    if found is None:
        return None
    signal, correction = found
    return ImplicitFeedback(
        interaction_id=previous.id,
        signal=signal,
        evidence=text[:MAX_EVIDENCE_CHARS],
        correction=correction,
        fix_worked=False if signal == "error_after_fix" else None,
    )


def record_implicit_feedback(
    store: Store,
    *,
    conversation_id: str,
    interaction_id: str,
    messages: list[dict[str, Any]],
    created_at: datetime,
) -> Feedback | None:
    """Look at the conversation's previous interaction and record what ``messages`` (the request of
    ``interaction_id``, started at ``created_at``) say about it; returns the feedback, if any."""
    previous = store.interactions.latest_in_conversation(
        conversation_id, before=created_at, exclude_id=interaction_id
    )
    if previous is None:
        return None
    found = detect_implicit_feedback(previous, messages, now=created_at)
    if found is None:
        return None
    return store.feedback.upsert(
        Feedback(
            interaction_id=found.interaction_id,
            source="implicit",
            signal=found.signal,
            thumbs="down",
            correction=storable_text(found.correction) if found.correction else None,
            fix_worked=found.fix_worked,
            evidence=storable_text(found.evidence),
        )
    )
