"""Continue's development-data events: stored, linked to the interaction they are about, and turned
into feedback.

Continue posts ``{name, data, schema, level, profileId}`` to each ``data:`` destination whose URL is
http(s), with ``data`` already parsed by its own zod schema for that event, schema version and level
(npm ``@continuedev/config-yaml``, ``schemas/data``). At level ``noCode`` the prompt, the completion
and any code are left out.

Linking. Chat-side events (``chatInteraction``, ``chatFeedback``, ``editOutcome``, ...) carry the
prompt Continue rendered (``<role>\\ncontent\\n\\n`` per message) and the completion it streamed: they
match an interaction whose answer is that completion and whose last user message is in that prompt.
``autocomplete`` events match a completion or FIM interaction by prefix (or prompt) and completion.
Several matches are decided by the IDE session (an interaction already linked from the same
``sessionId``), then by recency. Events without code link through their session when it points to
exactly one interaction. Anything else is kept unlinked, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from genesys.runtime.chat_format import content_text
from genesys.runtime.interaction_log import last_user_text
from genesys.runtime.store import DataLevel, Feedback, IdeEvent, Interaction, Store, Thumbs, utcnow
from genesys.tools.feedback import storable_text

log = structlog.get_logger(__name__)

CHAT_EVENTS = frozenset(
    {"chatInteraction", "chatFeedback", "editInteraction", "editOutcome", "quickEdit", "nextEditOutcome"}
)
COMPLETION_EVENTS = frozenset({"autocomplete"})
# Feedback may come long after the answer (a thumbs-down on yesterday's chat); look back this far.
LINK_WINDOW = timedelta(days=7)
# Continue's completion is the text we streamed; allow for whitespace trimmed at either end.
_LENGTH_SLACK = 64
_OUR_ID_PREFIXES = ("chatcmpl-", "cmpl-")


class ContinueEvent(BaseModel):
    """The body Continue posts to an http(s) ``data:`` destination. Unknown top-level keys are
    ignored (Continue may add some); ``data`` is kept verbatim."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    data: dict[str, Any]
    schema_version: str = Field(alias="schema", min_length=1, max_length=32, pattern=r"^\d+\.\d+\.\d+")
    level: DataLevel = "all"
    profile_id: str | None = Field(None, alias="profileId", max_length=256)


class EventReceipt(BaseModel):
    """What became of one event: its id, the interaction it was linked to, the feedback it gave."""

    id: int
    object: Literal["ide_event"] = "ide_event"
    name: str
    interaction_id: str | None
    link: str
    feedback: Feedback | None = None


@dataclass(frozen=True)
class Link:
    interaction_id: str | None
    how: str


def storable_data(value: Any) -> Any:
    """A copy of ``value`` (parsed JSON) with every string and key made storable (see
    ``storable_text``). Iterative, so that JSON nested as deep as the parser allows cannot overflow
    the stack."""
    root: list[Any] = [value]
    pending: list[tuple[Any, Any]] = [(root, 0)]  # (container, key) of an item still to clean
    while pending:
        container, key = pending.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = storable_text(item)
        elif isinstance(item, list):
            container[key] = items = list(item)
            pending.extend((items, i) for i in range(len(items)))
        elif isinstance(item, dict):
            container[key] = fields = {storable_text(str(k)): v for k, v in item.items()}
            pending.extend((fields, k) for k in fields)
    return root[0]


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _norm(text: str) -> str:
    return " ".join(text.split())


def feedback_of(name: str, data: dict[str, Any]) -> tuple[Thumbs, str] | None:
    """The thumbs an event gives its interaction and the field that says so, or None."""
    if name == "chatFeedback" and isinstance(data.get("feedback"), bool):
        return ("up" if data["feedback"] else "down"), f"feedback={str(data['feedback']).lower()}"
    if name in ("autocomplete", "editOutcome", "nextEditOutcome") and isinstance(data.get("accepted"), bool):
        # An aborted next edit was never judged by the user: not a rejection.
        if name == "nextEditOutcome" and data.get("aborted") is True:
            return None
        return ("up" if data["accepted"] else "down"), f"accepted={str(data['accepted']).lower()}"
    return None


def _chat_match(interaction: Interaction, prompt: str | None, completion: str) -> bool:
    if _norm(interaction.answer) != completion:
        return False
    if prompt is None:
        return True
    asked = _norm(last_user_text(interaction.request_messages))
    return not asked or asked in prompt


def _completion_match(
    interaction: Interaction, prompt: str | None, prefix: str | None, completion: str
) -> bool:
    if completion not in _norm(interaction.answer):  # Continue trims and cuts what the model wrote
        return False
    sent = (
        content_text(interaction.request_messages[0].get("content")) if interaction.request_messages else ""
    )
    if not sent:
        return False
    if prompt is not None and sent == prompt:
        return True
    if not prefix:
        return False
    # FIM: the prompt we were sent is the prefix, perhaps pruned at the top by Continue.
    return sent.endswith(prefix) or prefix.endswith(sent)


def _pick(matches: list[Interaction], session_conversations: set[str], how: str) -> Link:
    """Newest first already; a conversation this IDE session is known to be in wins."""
    for interaction in matches:
        if interaction.conversation_id in session_conversations:
            return Link(interaction.id, f"{how}+session")
    return Link(matches[0].id, how if len(matches) == 1 else f"{how} (newest of {len(matches)})")


def _code_matches(
    store: Store, name: str, data: dict[str, Any], completion: str, now: datetime
) -> list[Interaction]:
    """Recent interactions, newest first, that answered this event's prompt with its completion."""
    wanted = _norm(completion)
    prompt = _text(data, "prompt")
    since = now - LINK_WINDOW
    if name in COMPLETION_EVENTS:
        candidates = store.ide_events.candidate_interactions(
            endpoints=("fim", "completion"), since=since, min_answer_chars=len(wanted)
        )
        prefix = _text(data, "prefix")
        return [c for c in candidates if _completion_match(c, prompt, prefix, wanted)]
    slack = _LENGTH_SLACK + len(completion) // 10
    candidates = store.ide_events.candidate_interactions(
        endpoints=("chat",),
        since=since,
        min_answer_chars=max(0, len(wanted) - slack),
        max_answer_chars=len(completion) + slack,
    )
    normalized_prompt = _norm(prompt) if prompt is not None else None
    return [c for c in candidates if _chat_match(c, normalized_prompt, wanted)]


def link_event(store: Store, name: str, data: dict[str, Any], *, now: datetime | None = None) -> Link:
    """The interaction an event is about, and how it was found (or why none was)."""
    now = now or utcnow()
    session_id = _text(data, "sessionId")
    in_session = store.ide_events.linked_in_session(session_id) if session_id else []
    for key in ("requestId", "completionId", "interactionId"):
        given = _text(data, key)
        if given and given.startswith(_OUR_ID_PREFIXES) and store.interactions.get(given[:64]) is not None:
            return Link(given[:64], f"id:{key}")
    completion = _text(data, "completion")
    if completion and completion.strip() and (name in CHAT_EVENTS or name in COMPLETION_EVENTS):
        matches = _code_matches(store, name, data, completion, now)
        if matches:
            return _pick(matches, {conversation for _, conversation in in_session}, "prompt+completion")
        return Link(None, "unlinked: no recent interaction has this prompt and completion")
    if not session_id:
        return Link(None, "unlinked: no prompt, completion or session to link by")
    if len(in_session) == 1:
        return Link(in_session[0][0], "session")
    if in_session:
        return Link(None, f"unlinked: its session has {len(in_session)} interactions and it names none")
    return Link(None, "unlinked: no code and no linked event in its session")


def ingest_continue_event(
    store: Store, event: ContinueEvent, *, user: str | None = None, now: datetime | None = None
) -> EventReceipt:
    """Store one Continue event, link it to its interaction when it can be, and record the feedback
    it carries (source ``continue``, signal = the event name) on a linked interaction.

    Never raises for an event it cannot understand or link: such events are kept, unlinked.
    """
    now = now or utcnow()
    # JSON may hold lone surrogates ("\\ud800"): no UTF-8 column or response can carry them.
    data: dict[str, Any] = storable_data(event.data)
    link = link_event(store, event.name, data, now=now)
    session_id = _text(data, "sessionId")
    stored = store.ide_events.add(
        IdeEvent(
            name=event.name,
            schema_version=event.schema_version,
            level=event.level,
            profile_id=storable_text(event.profile_id) if event.profile_id else None,
            session_id=session_id[:256] if session_id else None,
            user=user,
            data=data,
            interaction_id=link.interaction_id,
            link=link.how[:256],
            received_at=now,
        )
    )
    assert stored.id is not None  # set by the database on insert
    feedback: Feedback | None = None
    said = feedback_of(event.name, data)
    if link.interaction_id is not None and said is not None:
        thumbs, because = said
        feedback = store.feedback.upsert(
            Feedback(
                interaction_id=link.interaction_id,
                source="continue",
                signal=event.name,
                thumbs=thumbs,
                evidence=f"Continue {event.name} event #{stored.id}: {because}",
            )
        )
    log.info(
        "continue_event.stored",
        event_id=stored.id,
        event_name=event.name,
        schema=event.schema_version,
        level=event.level,
        interaction_id=link.interaction_id,
        link=link.how,
        thumbs=feedback.thumbs if feedback else None,
    )
    return EventReceipt(
        id=stored.id, name=event.name, interaction_id=link.interaction_id, link=link.how, feedback=feedback
    )
