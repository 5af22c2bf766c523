"""Events the IDE reports about its use of Genesys (Continue's ``data:`` destinations).

Every event is kept as it came (its ``data`` verbatim), whether or not it could be linked to the
interaction it is about; ``interaction_id`` and ``link`` say which one and how, or why not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow
from genesys.runtime.store.interactions import Endpoint, Interaction, InteractionRow

DataLevel = Literal["all", "noCode"]


class IdeEventRow(Base):
    __tablename__ = "ide_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(64), index=True)
    schema_version: Mapped[str] = mapped_column(String(32))
    level: Mapped[str] = mapped_column(String(16))
    profile_id: Mapped[str | None] = mapped_column(String(256))
    session_id: Mapped[str | None] = mapped_column(String(256), index=True)
    user: Mapped[str | None] = mapped_column(String(256))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    interaction_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("interactions.id"), index=True, nullable=True
    )
    link: Mapped[str] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class IdeEvent(BaseModel):
    """One event as the IDE posted it, with the interaction it was linked to (if any)."""

    model_config = ConfigDict(from_attributes=True)

    id: int | None = None
    source: str = "continue"
    name: str
    schema_version: str
    level: DataLevel = "all"
    profile_id: str | None = None
    session_id: str | None = None
    user: str | None = Field(None, description="The API key's name that posted it, when keys are on.")
    data: dict[str, Any] = Field(default_factory=dict)
    interaction_id: str | None = None
    link: str = Field("unlinked", description="How it was linked (or why it was not).")
    received_at: datetime = Field(default_factory=utcnow)


class IdeEventStore:
    """The ``ide_events`` table; also the look-ups that link an event to its interaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[IdeEventRow.__table__])  # type: ignore[list-item]

    def add(self, event: IdeEvent) -> IdeEvent:
        """Insert one event; returns it with its id."""
        with self.db.session() as session:
            row = IdeEventRow(**event.model_dump(exclude={"id"}))
            session.add(row)
            session.flush()
            return IdeEvent.model_validate(row)

    def get(self, event_id: int) -> IdeEvent | None:
        with self.db.reader() as session:
            row = session.get(IdeEventRow, event_id)
            return IdeEvent.model_validate(row) if row else None

    def for_interaction(self, interaction_id: str) -> list[IdeEvent]:
        with self.db.reader() as session:
            rows = session.scalars(
                select(IdeEventRow)
                .where(IdeEventRow.interaction_id == interaction_id)
                .order_by(IdeEventRow.id)
            ).all()
            return [IdeEvent.model_validate(r) for r in rows]

    def linked_in_session(self, session_id: str) -> list[tuple[str, str]]:
        """``(interaction_id, conversation_id)`` of the interactions this IDE session's events were
        linked to, most recent first, each once."""
        query = (
            select(InteractionRow.id, InteractionRow.conversation_id, func.max(IdeEventRow.id))
            .join(InteractionRow, InteractionRow.id == IdeEventRow.interaction_id)
            .where(IdeEventRow.session_id == session_id)
            .group_by(InteractionRow.id, InteractionRow.conversation_id)
            .order_by(func.max(IdeEventRow.id).desc())
        )
        with self.db.reader() as session:
            return [(str(i), str(c)) for i, c, _ in session.execute(query).all()]

    def count(self) -> int:
        with self.db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(IdeEventRow)) or 0)

    def candidate_interactions(
        self,
        *,
        endpoints: tuple[Endpoint, ...],
        since: datetime,
        min_answer_chars: int = 0,
        max_answer_chars: int | None = None,
        limit: int = 200,
    ) -> list[Interaction]:
        """Recent interactions an event may be about, newest first: on ``endpoints``, created since
        ``since``, not failed, with an answer whose length (in characters) is in the given range.

        The length range is checked by the database so that only a handful of rows are loaded.
        """
        query = (
            select(InteractionRow)
            .where(
                InteractionRow.endpoint.in_(endpoints),
                InteractionRow.created_at >= since,
                InteractionRow.status != "error",
                func.length(InteractionRow.answer) >= min_answer_chars,
            )
            .order_by(InteractionRow.created_at.desc(), InteractionRow.id.desc())
            .limit(limit)
        )
        if max_answer_chars is not None:
            query = query.where(func.length(InteractionRow.answer) <= max_answer_chars)
        with self.db.reader() as session:
            return [Interaction.model_validate(r) for r in session.scalars(query).all()]

    # Defined last: below it, `list` in an annotation would name this method, not the builtin.
    def list(self, *, name: str | None = None, limit: int = 1000, offset: int = 0) -> list[IdeEvent]:
        query = select(IdeEventRow).order_by(IdeEventRow.id)
        if name is not None:
            query = query.where(IdeEventRow.name == name)
        with self.db.reader() as session:
            return [
                IdeEvent.model_validate(r) for r in session.scalars(query.offset(offset).limit(limit)).all()
            ]
