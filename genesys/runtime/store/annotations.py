"""The Analyst's view of each interaction: category, topics, tags, quality score, tier, reasons.

Filled in after the fact (the interaction is stored first); re-analysis replaces the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Float, ForeignKey, String, delete, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow

Tier = Literal["premium", "standard", "discarded"]


class AnnotationRow(Base):
    __tablename__ = "annotations"

    interaction_id: Mapped[str] = mapped_column(String(64), ForeignKey("interactions.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    topics: Mapped[list[str]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    quality_score: Mapped[float] = mapped_column(Float)
    tier: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    analyzer_version: Mapped[str] = mapped_column(String(32))
    analyzed_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Annotation(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    interaction_id: str
    category: str
    topics: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    quality_score: float = Field(ge=0, le=1)
    tier: Tier
    reasons: list[str] = Field(default_factory=list)
    analyzer_version: str
    analyzed_at: datetime = Field(default_factory=utcnow)


class AnnotationStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[AnnotationRow.__table__])  # type: ignore[list-item]

    def put_many(self, annotations: list[Annotation]) -> None:
        """Insert or replace, in one transaction."""
        # One DELETE per 500 ids and one executemany INSERT: merge() would SELECT every row first,
        # which cost more than the tagging itself on a batch of 1,000 (genesys bench ingest).
        rows = {a.interaction_id: a.model_dump() for a in annotations}  # the last one of an id wins
        ids = list(rows)
        with self.db.session() as session:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                session.execute(delete(AnnotationRow).where(AnnotationRow.interaction_id.in_(chunk)))
            if rows:
                session.execute(insert(AnnotationRow), list(rows.values()))

    def get(self, interaction_id: str) -> Annotation | None:
        with self.db.reader() as session:
            row = session.get(AnnotationRow, interaction_id)
            return Annotation.model_validate(row) if row else None

    def for_interactions(self, interaction_ids: list[str]) -> dict[str, Annotation]:
        out: dict[str, Annotation] = {}
        with self.db.reader() as session:
            for start in range(0, len(interaction_ids), 500):
                chunk = interaction_ids[start : start + 500]
                for row in session.scalars(
                    select(AnnotationRow).where(AnnotationRow.interaction_id.in_(chunk))
                ):
                    out[row.interaction_id] = Annotation.model_validate(row)
        return out

    def list(self, *, tier: Tier | None = None, limit: int = 1000, offset: int = 0) -> list[Annotation]:
        query = select(AnnotationRow).order_by(AnnotationRow.analyzed_at, AnnotationRow.interaction_id)
        if tier is not None:
            query = query.where(AnnotationRow.tier == tier)
        with self.db.reader() as session:
            return [
                Annotation.model_validate(r) for r in session.scalars(query.offset(offset).limit(limit)).all()
            ]
