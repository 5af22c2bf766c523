"""From stored interactions to curation examples: the filters, the training target, clean texts.

An ``Example`` is what one interaction gives a dataset: the prompt (its request messages), the SFT
target, the original answer when it serves as a rejected or undesirable completion, and the users'
verdict on that answer (for KTO). The rules:

- a corrected interaction becomes good data through its correction (prompt -> correction), never
  through its wrong answer, which is kept only as ``rejected`` (DPO) and as an undesirable
  completion (KTO);
- an answer with any negative signal is never an SFT target, whatever the configured criteria say;
  when users clearly rejected it (quality outcome ``learning``) it stays as a KTO negative;
- the configured ``filter_criteria`` add: ``relevance`` (a configured category, not chit-chat),
  ``accuracy`` (tier not discarded; standard only when asked), ``completeness`` (status completed,
  not cut at ``max_tokens``, not empty, not over the length cap).

The judgement comes from ``genesys.tools.quality.assess_quality`` run now, on all feedback so far (it
may have arrived after the Analyst's pass); the category and topics come from the Analyst's
annotation, and an interaction without one is left out (``not_analyzed``).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from genesys.runtime.chat_format import content_text
from genesys.runtime.store import Annotation, Feedback, Interaction, Tier
from genesys.tools.quality import QualityBounds, assess_quality, best_correction
from genesys.tools.scrub import Scrubber

Criterion = Literal["relevance", "accuracy", "completeness"]
KNOWN_CRITERIA: frozenset[str] = frozenset({"relevance", "accuracy", "completeness"})
# Why an interaction gives no example (or no SFT target): the three criteria, and structural reasons
# that always apply.
ExclusionReason = Literal["not_chat", "not_analyzed", "invalid", "relevance", "accuracy", "completeness"]
TargetSource = Literal["answer", "correction"]
Message = dict[str, str]

TRUNCATION_MARK = "\n[... {n} characters removed ...]\n"
# Texts are cut to this many times the message cap before scrubbing: scanning a multi-megabyte paste
# costs seconds, and all but its two ends is dropped anyway.
_PRESCAN_FACTOR = 2
_ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_CHITCHAT_WORDS = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "yo",
        "hiya",
        "howdy",
        "thanks",
        "thank",
        "you",
        "thx",
        "ty",
        "cheers",
        "ok",
        "okay",
        "k",
        "cool",
        "great",
        "nice",
        "good",
        "awesome",
        "perfect",
        "morning",
        "afternoon",
        "evening",
        "night",
        "bye",
        "goodbye",
        "see",
        "later",
        "how",
        "are",
        "doing",
        "lol",
        "haha",
        "yes",
        "no",
        "yep",
        "nope",
        "sure",
        "please",
        "got",
        "it",
        "that",
        "works",
        "worked",
        "fine",
        "welcome",
        "again",
        "there",
        "much",
        "so",
        "very",
        "a",
        "lot",
        "for",
        "the",
        "help",
    ]
)
_WORD = re.compile(r"[a-z0-9']+")


class Example(BaseModel):
    """What one interaction contributes to a dataset (texts scrubbed and capped once prepared)."""

    interaction_id: str
    conversation_id: str
    created_at: datetime
    category: str
    topics: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    tier: Tier
    quality_score: float
    analyzer_version: str
    prompt: list[Message] = Field(description="Request messages (system, user, assistant), last one user.")
    target: str | None = Field(None, description="The SFT answer: the correction, or an accepted answer.")
    target_source: TargetSource | None = None
    answer: str | None = Field(None, description="The original answer, when it is rejected or rated.")
    label: bool | None = Field(None, description="Users' verdict on the original answer (KTO).")
    sft_excluded_by: ExclusionReason | None = Field(
        None, description="Why the original answer is no SFT target (the example then serves KTO only)."
    )

    @property
    def priority(self) -> int:
        """Which of two near-duplicates to keep: corrections, then premium, standard, KTO-only."""
        if self.target_source == "correction":
            return 3
        if self.target is not None:
            return 2 if self.tier == "premium" else 1
        return 0

    def kto_rows(self) -> list[tuple[str, bool]]:
        """(completion, label) pairs: the judged answer, and a correction as a desirable answer."""
        rows: list[tuple[str, bool]] = []
        if self.label is True and self.target_source == "answer" and self.target is not None:
            rows.append((self.target, True))
        if self.label is False and self.answer is not None:
            rows.append((self.answer, False))
        if self.target_source == "correction" and self.target is not None:
            rows.append((self.target, True))
        return rows


class Exclusion(BaseModel):
    """An interaction that gives no example, and why."""

    interaction_id: str
    conversation_id: str
    reason: ExclusionReason
    category: str | None = None


class TextStats(BaseModel):
    """What preparing the texts changed."""

    texts: int = 0
    scrubbed_texts: int = 0
    redactions: dict[str, int] = Field(default_factory=dict)
    truncated_texts: int = 0
    dropped_history_messages: int = 0


def normalize_messages(raw: Any, *, include_system: bool) -> list[Message]:
    """OpenAI request messages as plain ``{"role", "content"}`` text messages.

    ``developer`` becomes ``system``; tool messages, tool-call-only assistant turns, empty messages and
    anything malformed are dropped (the trainer reads system, user and assistant text only).
    """
    messages: list[Message] = []
    if not isinstance(raw, list):
        return messages
    for item in raw:
        if not isinstance(item, dict):
            continue
        role = _ROLE_ALIASES.get(str(item.get("role", "")))
        if role is None or (role == "system" and not include_system):
            continue
        text = content_text(item.get("content"))
        if not text.strip():
            continue
        messages.append({"role": role, "content": text})
    return messages


def is_chitchat(text: str) -> bool:
    """Small talk with nothing to learn from: only greetings, thanks and acknowledgements."""
    stripped = text.strip()
    if len(stripped) > 200:
        return False
    words = _WORD.findall(stripped.lower())
    if not words:
        return not any(ch.isalnum() for ch in stripped)
    return len(words) <= 8 and all(w in _CHITCHAT_WORDS for w in words)


class CurationRules(BaseModel):
    """The parameters the filters read (part of the recorded curation parameters)."""

    criteria: list[Criterion]
    categories: list[str]
    bounds: QualityBounds
    include_standard: bool
    include_system_prompt: bool
    max_message_chars: int


def judge(
    interaction: Interaction,
    feedback: list[Feedback],
    annotation: Annotation | None,
    rules: CurationRules,
) -> Example | Exclusion:
    """The example one interaction gives (texts raw: ``TextPreparer`` cleans them), or why none."""

    def excluded(reason: ExclusionReason) -> Exclusion:
        return Exclusion(
            interaction_id=interaction.id,
            conversation_id=interaction.conversation_id,
            reason=reason,
            category=annotation.category if annotation is not None else None,
        )

    if interaction.endpoint != "chat":
        return excluded("not_chat")
    if annotation is None:
        return excluded("not_analyzed")
    prompt = normalize_messages(interaction.request_messages, include_system=rules.include_system_prompt)
    if not prompt or prompt[-1]["role"] != "user":
        return excluded("invalid")
    if "relevance" in rules.criteria and (
        annotation.category not in rules.categories or is_chitchat(prompt[-1]["content"])
    ):
        return excluded("relevance")
    quality = assess_quality(interaction, feedback, rules.bounds)
    correction = best_correction(feedback)
    answer = interaction.answer if interaction.answer.strip() and interaction.status != "error" else None
    label = {"learning": False, "confirmed": True}.get(quality.outcome)
    target: str | None = None
    source: TargetSource | None = None
    reason: ExclusionReason | None = None
    if correction is not None and correction.correction is not None:
        if "completeness" in rules.criteria and len(correction.correction) > rules.max_message_chars:
            reason = "completeness"
        else:
            target, source = correction.correction, "correction"
    else:
        reason = _answer_exclusion(interaction, quality.negative_evidence, quality.tier, rules)
        if reason is None:
            target, source = interaction.answer, "answer"
    if target is None and not (label is False and answer is not None):
        return excluded(reason or "accuracy")
    return Example(
        interaction_id=interaction.id,
        conversation_id=interaction.conversation_id,
        created_at=interaction.created_at,
        category=annotation.category,
        topics=list(annotation.topics),
        tags=list(annotation.tags),
        tier=quality.tier,
        quality_score=quality.score,
        analyzer_version=annotation.analyzer_version,
        prompt=prompt,
        target=target,
        target_source=source,
        # The original answer is kept only where it is used: rejected, or rated.
        answer=answer if (source == "correction" or label is not None) else None,
        label=label,
        sft_excluded_by=reason if target is None else None,
    )


def _answer_exclusion(
    interaction: Interaction, negative: bool, tier: Tier, rules: CurationRules
) -> ExclusionReason | None:
    """Why the stored answer cannot be an SFT target, or None when it can."""
    answer = interaction.answer
    if negative:
        return "accuracy"  # never imitate an answer anyone marked wrong, whatever the criteria say
    if not answer.strip():
        return "completeness"
    if "completeness" in rules.criteria and (
        interaction.status != "completed"
        or interaction.finish_reason == "length"
        or len(answer) > rules.max_message_chars
    ):
        return "completeness"
    if "accuracy" in rules.criteria and (
        tier == "discarded" or (tier == "standard" and not rules.include_standard)
    ):
        return "accuracy"
    return None


# --- texts ---------------------------------------------------------------------------------------


def cut_middle(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: its head and tail, cut at a line end or a space where one
    is near (so no token is split), with a marker saying how much was removed. Both ends are kept
    because the end of a pasted log or file usually matters most."""
    if len(text) <= limit:
        return text
    room = max(limit - len(TRUNCATION_MARK.format(n=len(text))), 2)
    head_end = _boundary_before(text, room // 2)
    tail_room = room - head_end
    tail_start = _boundary_after(text, len(text) - tail_room, tail_room // 2)
    return f"{text[:head_end]}{TRUNCATION_MARK.format(n=tail_start - head_end)}{text[tail_start:]}"


def _boundary_before(text: str, index: int) -> int:
    """The last line end (else whitespace) in the second half of ``text[:index]``; else ``index``."""
    for sep in ("\n", " "):
        cut = text.rfind(sep, index // 2, index)
        if cut != -1:
            return cut
    return index


def _boundary_after(text: str, index: int, reach: int) -> int:
    """The first line start (else word start) within ``reach`` after ``index``; else ``index``."""
    for sep in ("\n", " "):
        cut = text.find(sep, index, index + reach)
        if cut != -1:
            return cut + 1
    return index


class TextPreparer:
    """Scrubs and caps every text of the examples; counts what it changed."""

    def __init__(self, scrubber: Scrubber, *, max_message_chars: int, max_row_chars: int) -> None:
        self.scrubber = scrubber
        self.max_message_chars = max_message_chars
        self.max_row_chars = max_row_chars
        self.stats = TextStats()
        self._redactions: Counter[str] = Counter()

    def text(self, raw: str) -> str:
        """One text: cut before scanning (bounded cost), scrubbed, then cut to the message cap."""
        self.stats.texts += 1
        pre = cut_middle(raw, self.max_message_chars * _PRESCAN_FACTOR)
        result = self.scrubber.scrub(pre)
        if result.changed:
            self.stats.scrubbed_texts += 1
            self._redactions.update(result.redactions)
        out = cut_middle(result.text, self.max_message_chars)
        if len(pre) < len(raw) or len(out) < len(result.text):
            self.stats.truncated_texts += 1
        return out

    def label(self, raw: str) -> str:
        """A short label (topic, tag): scrubbed, cut hard."""
        return self.scrubber.scrub(raw[:200]).text

    def example(self, example: Example) -> Example:
        prompt = [{"role": m["role"], "content": self.text(m["content"])} for m in example.prompt]
        target = self.text(example.target) if example.target is not None else None
        answer = self.text(example.answer) if example.answer is not None else None
        prompt = self._fit_row(prompt, max(len(target or ""), len(answer or "")))
        return example.model_copy(
            update={
                "prompt": prompt,
                "target": target,
                "answer": answer,
                "topics": [self.label(t) for t in example.topics],
                "tags": [self.label(t) for t in example.tags],
            }
        )

    def _fit_row(self, prompt: list[Message], completion_chars: int) -> list[Message]:
        """Drop the oldest history (then the system prompt) until prompt + completion fit the row cap.

        The last user message is always kept; each message is already within the message cap.
        """
        budget = self.max_row_chars - completion_chars

        def size(messages: list[Message]) -> int:
            return sum(len(m["content"]) for m in messages)

        if size(prompt) <= budget:
            return prompt
        system = [m for m in prompt[:1] if m["role"] == "system"]
        history = prompt[len(system) : -1]
        last = prompt[-1:]
        dropped = 0
        while history and size(system + history + last) > budget:
            history = history[1:]
            dropped += 1
            # History restarts at a user turn: some chat templates insist on user/assistant pairs.
            while history and history[0]["role"] != "user":
                history = history[1:]
                dropped += 1
        if size(system + history + last) > budget and system:
            system = []
            dropped += 1
        self.stats.dropped_history_messages += dropped
        return system + history + last

    def finish(self) -> TextStats:
        self.stats.redactions = dict(sorted(self._redactions.items()))
        return self.stats
