"""Feedback on interactions: explicit (``/v1/feedback``), from the IDE (Continue events), implicit
(the user's next message corrects the answer, a regenerate).

One row per (interaction, source, signal): repeating feedback updates the row, it does not duplicate.
Fields left out of an update keep their value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow

FeedbackSource = Literal["explicit", "continue", "implicit"]
Thumbs = Literal["up", "down"]
# Signals: "user" for explicit feedback; Continue event names; implicit "correction", "regenerate",
# "error_after_fix".
EXPLICIT_SIGNAL = "user"


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("interaction_id", "source", "signal", name="uq_feedback_signal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    interaction_id: Mapped[str] = mapped_column(String(64), ForeignKey("interactions.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    signal: Mapped[str] = mapped_column(String(64))
    thumbs: Mapped[str | None] = mapped_column(String(8))
    rating: Mapped[int | None] = mapped_column(Integer)
    correction: Mapped[str | None] = mapped_column(Text)
    fix_worked: Mapped[bool | None] = mapped_column(Boolean)
    comment: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Feedback(BaseModel):
    """What a user (or the IDE, or their next message) said about one answer."""

    model_config = ConfigDict(from_attributes=True)

    interaction_id: str
    source: FeedbackSource = "explicit"
    signal: str = EXPLICIT_SIGNAL
    thumbs: Thumbs | None = None
    rating: int | None = Field(None, ge=1, le=5)
    correction: str | None = None
    fix_worked: bool | None = None
    comment: str | None = None
    evidence: str | None = Field(None, description="For implicit signals: the text that gave it away.")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


_FIELDS = ("thumbs", "rating", "correction", "fix_worked", "comment", "evidence")


class FeedbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[FeedbackRow.__table__])  # type: ignore[list-item]

    def upsert(self, feedback: Feedback) -> Feedback:
        """Insert, or update the fields given (not None) of the existing row; returns the stored row."""
        try:
            return self._upsert(feedback)
        except IntegrityError:
            # Another process (a replica) inserted the same (interaction, source, signal) between our
            # read and our insert: the second try finds its row and updates it.
            return self._upsert(feedback)

    def _upsert(self, feedback: Feedback) -> Feedback:
        with self.db.session() as session:
            row = session.scalars(
                select(FeedbackRow).where(
                    FeedbackRow.interaction_id == feedback.interaction_id,
                    FeedbackRow.source == feedback.source,
                    FeedbackRow.signal == feedback.signal,
                )
            ).first()
            if row is None:
                row = FeedbackRow(**feedback.model_dump())
                session.add(row)
            else:
                for name in _FIELDS:
                    value = getattr(feedback, name)
                    if value is not None:
                        setattr(row, name, value)
                row.updated_at = utcnow()
            session.flush()
            return Feedback.model_validate(row)

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows by (source, thumbs) — thumbs "none" when the feedback gave no verdict."""
        query = select(FeedbackRow.source, FeedbackRow.thumbs, func.count()).group_by(
            FeedbackRow.source, FeedbackRow.thumbs
        )
        with self.db.reader() as session:
            return {(source, thumbs or "none"): int(n) for source, thumbs, n in session.execute(query)}

    def verdicts_by_version(self) -> dict[tuple[str, str, str], int]:
        """Thumbs up and down by (model version, A/B arm, verdict) of the answers they judge; the arm
        is "none" for answers given outside an A/B test."""
        from genesys.runtime.store.interactions import InteractionRow

        query = (
            select(InteractionRow.model_version, InteractionRow.ab_arm, FeedbackRow.thumbs, func.count())
            .join(InteractionRow, InteractionRow.id == FeedbackRow.interaction_id)
            .where(FeedbackRow.thumbs.in_(("up", "down")))
            .group_by(InteractionRow.model_version, InteractionRow.ab_arm, FeedbackRow.thumbs)
        )
        with self.db.reader() as session:
            return {
                (version, arm or "none", thumbs or "none"): int(n)
                for version, arm, thumbs, n in session.execute(query)
            }

    def for_interaction(self, interaction_id: str) -> list[Feedback]:
        with self.db.reader() as session:
            rows = session.scalars(
                select(FeedbackRow)
                .where(FeedbackRow.interaction_id == interaction_id)
                .order_by(FeedbackRow.id)
            ).all()
            return [Feedback.model_validate(r) for r in rows]

    def for_interactions(self, interaction_ids: list[str]) -> dict[str, list[Feedback]]:
        out: dict[str, list[Feedback]] = {i: [] for i in interaction_ids}
        with self.db.reader() as session:
            for start in range(0, len(interaction_ids), 500):
                chunk = interaction_ids[start : start + 500]
                rows = session.scalars(
                    select(FeedbackRow).where(FeedbackRow.interaction_id.in_(chunk)).order_by(FeedbackRow.id)
                ).all()
                for row in rows:
                    out[row.interaction_id].append(Feedback.model_validate(row))
        return out

    def list(self, *, since: datetime | None = None, limit: int = 1000, offset: int = 0) -> list[Feedback]:
        query = select(FeedbackRow).order_by(FeedbackRow.updated_at, FeedbackRow.id)
        if since is not None:
            query = query.where(FeedbackRow.updated_at >= since)
        with self.db.reader() as session:
            return [
                Feedback.model_validate(r) for r in session.scalars(query.offset(offset).limit(limit)).all()
            ]
