"""Operator conversations with the Deploy agent: one row per conversation, one per message, in order.

An operator's message and the Deploy agent's reply are stored as they happen, with what the reply
did (``action``: the rollout step taken or refused, None for a question) so that the conversation
can be read back (``GET /v1/operator/chat/{id}``) beside the rollout's own audit trail.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from genesys.errors import NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow

ChatRole = Literal["operator", "deploy"]


class OperatorConversationRow(Base):
    __tablename__ = "operator_conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_by: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class OperatorMessageRow(Base):
    __tablename__ = "operator_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("operator_conversations.id"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class OperatorMessage(BaseModel):
    """One turn: an operator's message, or the Deploy agent's reply and what it did."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    role: ChatRole
    author: str = Field(description="The operator's key name, or 'deploy agent'.")
    text: str
    action: dict[str, Any] | None = Field(None, description="The rollout step the reply took or refused.")
    at: datetime


class OperatorConversation(BaseModel):
    """A conversation of operators with the Deploy agent."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    started_by: str
    mode: str = Field(description="How the Deploy agent thought: policy or llm.")
    created_at: datetime
    updated_at: datetime


def new_conversation_id(now: datetime) -> str:
    return f"op-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class OperatorChatStore:
    """The conversations and their messages; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        tables = [OperatorConversationRow.__table__, OperatorMessageRow.__table__]
        Base.metadata.create_all(db.engine, tables=tables)  # type: ignore[arg-type]

    def create(self, *, started_by: str, mode: str) -> OperatorConversation:
        now = utcnow()
        with self.db.session() as session:
            row = OperatorConversationRow(
                id=new_conversation_id(now), started_by=started_by, mode=mode, created_at=now, updated_at=now
            )
            session.add(row)
            session.flush()
            return OperatorConversation.model_validate(row)

    def get(self, conversation_id: str) -> OperatorConversation:
        """The conversation; raises ``NotFound``."""
        with self.db.reader() as session:
            row = session.get(OperatorConversationRow, conversation_id)
            if row is None:
                raise NotFound(f"no operator conversation '{conversation_id}'", param="conversation_id")
            return OperatorConversation.model_validate(row)

    def messages(self, conversation_id: str) -> list[OperatorMessage]:
        """The conversation's messages, oldest first (empty for an unknown id)."""
        query = (
            select(OperatorMessageRow)
            .where(OperatorMessageRow.conversation_id == conversation_id)
            .order_by(OperatorMessageRow.seq)
        )
        with self.db.reader() as session:
            return [OperatorMessage.model_validate(r) for r in session.scalars(query).all()]

    def add(
        self,
        conversation_id: str,
        *,
        role: ChatRole,
        author: str,
        text: str,
        action: dict[str, Any] | None = None,
    ) -> OperatorMessage:
        """Append a message after the conversation's last one; raises ``NotFound``."""
        now = utcnow()
        with self.db.session() as session:
            if session.get(OperatorConversationRow, conversation_id) is None:
                raise NotFound(f"no operator conversation '{conversation_id}'", param="conversation_id")
            last = session.scalar(
                select(func.max(OperatorMessageRow.seq)).where(
                    OperatorMessageRow.conversation_id == conversation_id
                )
            )
            row = OperatorMessageRow(
                conversation_id=conversation_id,
                seq=(last + 1) if last is not None else 0,
                role=role,
                author=author,
                text=text,
                action=action,
                at=now,
            )
            session.add(row)
            session.execute(
                update(OperatorConversationRow)
                .where(OperatorConversationRow.id == conversation_id)
                .values(updated_at=now)
            )
            session.flush()
            return OperatorMessage.model_validate(row)
