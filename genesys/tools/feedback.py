"""Explicit feedback on an interaction, and an interaction read back with everything said about it.

Plain functions over the store with pydantic inputs and outputs: the API calls them for
``POST /v1/feedback`` and ``GET /v1/interactions/{id}``; the Analyst and Curator agents can call them
as tools.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genesys.errors import NotFound
from genesys.runtime.store import Feedback, IdeEvent, Interaction, Store, Thumbs

MAX_CORRECTION_CHARS = 65_536
MAX_COMMENT_CHARS = 8_192
_FEEDBACK_FIELDS = ("thumbs", "rating", "correction", "fix_worked", "comment")


def storable_text(text: str) -> str:
    """``text`` with anything a UTF-8 database column cannot hold (lone surrogates, which JSON
    escapes such as ``"\\ud800"`` produce) replaced by U+FFFD; everything else is kept verbatim."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    return text


class FeedbackCreate(BaseModel):
    """What a user says about one answer: at least one of thumbs, rating, correction, fix_worked,
    comment. Unknown fields are refused, so a misspelt field is an error rather than lost feedback."""

    model_config = ConfigDict(extra="forbid")

    interaction_id: str = Field(min_length=1, max_length=64, description="The answer's id (its `id`).")
    thumbs: Thumbs | None = None
    rating: int | None = Field(None, ge=1, le=5, strict=True)
    correction: str | None = Field(
        None, min_length=1, max_length=MAX_CORRECTION_CHARS, description="The right answer."
    )
    fix_worked: bool | None = Field(
        None, strict=True, description="Whether the proposed fix solved the problem."
    )
    comment: str | None = Field(None, min_length=1, max_length=MAX_COMMENT_CHARS)

    @field_validator("interaction_id", "correction", "comment")
    @classmethod
    def _unicode(cls, value: str | None) -> str | None:
        if value is not None and storable_text(value) != value:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)")
        return value

    @model_validator(mode="after")
    def _something_said(self) -> FeedbackCreate:
        if all(getattr(self, name) is None for name in _FEEDBACK_FIELDS):
            raise ValueError(f"give at least one of {', '.join(_FEEDBACK_FIELDS)}")
        return self


class InteractionDetail(BaseModel):
    """An interaction with its feedback (every source) and the IDE events linked to it."""

    interaction: Interaction
    feedback: list[Feedback]
    ide_events: list[IdeEvent]


def _require_interaction(store: Store, interaction_id: str) -> Interaction:
    interaction = store.interactions.get(interaction_id)
    if interaction is None:
        raise NotFound(
            f"No interaction with id '{interaction_id}'. Use the `id` (or the X-Genesys-Interaction-Id "
            "header) of a Genesys reply.",
            param="interaction_id",
            code="interaction_not_found",
        )
    return interaction


def give_feedback(store: Store, request: FeedbackCreate) -> Feedback:
    """Record explicit feedback; repeating it updates the same row (fields left out keep their value).

    Raises ``NotFound`` when the interaction does not exist.
    """
    _require_interaction(store, request.interaction_id)
    fields: dict[str, Any] = request.model_dump(include=set(_FEEDBACK_FIELDS))
    return store.feedback.upsert(Feedback(interaction_id=request.interaction_id, source="explicit", **fields))


def interaction_detail(store: Store, interaction_id: str) -> InteractionDetail:
    """The interaction, its feedback and its IDE events. Raises ``NotFound`` when it does not exist."""
    interaction = _require_interaction(store, interaction_id)
    return InteractionDetail(
        interaction=interaction,
        feedback=store.feedback.for_interaction(interaction_id),
        ide_events=store.ide_events.for_interaction(interaction_id),
    )
