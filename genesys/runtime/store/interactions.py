"""Interactions: one exchange each, what the IDE sent and what Genesys answered.

An interaction is committed before the last chunk of its reply leaves the server, so a reply the
client saw complete is never lost, even if the process is killed right after.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow

InteractionType = Literal["chat", "code", "debug", "explanation"]
Endpoint = Literal["chat", "completion", "fim"]
Status = Literal["completed", "error", "cancelled"]


def new_interaction_id(endpoint: Endpoint) -> str:
    prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


class InteractionRow(Base):
    __tablename__ = "interactions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str | None] = mapped_column(String(256), index=True)
    endpoint: Mapped[str] = mapped_column(String(16))
    request_messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    ab_arm: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    interaction_type: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    completed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Interaction(BaseModel):
    """One exchange: what the IDE sent, what Genesys answered, and how."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    request_id: str | None = None
    conversation_id: str
    user: str | None = None
    endpoint: Endpoint = "chat"
    request_messages: list[dict[str, Any]]
    context: dict[str, Any] = Field(default_factory=dict)
    answer: str
    tool_calls: list[dict[str, Any]] | None = None
    model_version: str
    ab_arm: str | None = None
    latency_ms: float
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    status: Status = "completed"
    error: str | None = None
    interaction_type: InteractionType = "chat"
    category: str | None = None
    created_at: datetime
    completed_at: datetime = Field(default_factory=utcnow)


class InteractionStore:
    """The interactions table. Thread-safe: each call uses its own session."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, interaction: Interaction) -> None:
        """Commit one interaction (blocking); it is durable when this returns."""
        with self.db.session() as session:
            session.add(InteractionRow(**interaction.model_dump()))

    def get(self, interaction_id: str) -> Interaction | None:
        with self.db.reader() as session:
            row = session.get(InteractionRow, interaction_id)
            return Interaction.model_validate(row) if row else None

    def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: datetime | None = None,
        conversation_id: str | None = None,
    ) -> list[Interaction]:
        query = select(InteractionRow).order_by(InteractionRow.created_at, InteractionRow.id)
        if since is not None:
            query = query.where(InteractionRow.created_at >= since)
        if conversation_id is not None:
            query = query.where(InteractionRow.conversation_id == conversation_id)
        with self.db.reader() as session:
            rows = session.scalars(query.offset(offset).limit(limit)).all()
            return [Interaction.model_validate(r) for r in rows]

    def latest_in_conversation(
        self, conversation_id: str, *, before: datetime, exclude_id: str | None = None
    ) -> Interaction | None:
        """The newest interaction of a conversation created before ``before`` (other than ``exclude_id``)."""
        query = select(InteractionRow).where(
            InteractionRow.conversation_id == conversation_id, InteractionRow.created_at < before
        )
        if exclude_id is not None:
            query = query.where(InteractionRow.id != exclude_id)
        query = query.order_by(InteractionRow.created_at.desc(), InteractionRow.id.desc()).limit(1)
        with self.db.reader() as session:
            row = session.scalars(query).first()
            return Interaction.model_validate(row) if row else None

    def count(self) -> int:
        with self.db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(InteractionRow)) or 0)
