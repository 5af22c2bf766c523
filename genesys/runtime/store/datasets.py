"""Dataset versions: one row per curated dataset (its id, when, its counts, where its manifest lies, the
hash of the configuration that made it). The files live under ``data/training/*/<version>/``; the
manifest there is the full record, this table is the index the agents and ``genesys analyze`` read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Boolean, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    manifest_path: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    rebuilt_from: Mapped[str | None] = mapped_column(String(64))
    reproduced: Mapped[bool | None] = mapped_column(Boolean)


class DatasetVersion(BaseModel):
    """One curated dataset version, as registered."""

    model_config = ConfigDict(from_attributes=True)

    version: str = Field(description="ds-YYYYMMDD-HHMMSS-<short content hash>.")
    created_at: datetime = Field(default_factory=utcnow)
    config_hash: str = Field(description="sha256 of the curation parameters and the settings they used.")
    manifest_path: str = Field(description="The manifest.json of the version (absolute path).")
    counts: dict[str, Any] = Field(default_factory=dict, description="Per stage, split and category.")
    rebuilt_from: str | None = Field(
        None, description="The version whose manifest this one was rebuilt from."
    )
    reproduced: bool | None = Field(
        None, description="For a rebuild: every data file is byte-identical to the original's."
    )


class DatasetStore:
    """The dataset_versions table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[DatasetVersionRow.__table__])  # type: ignore[list-item]

    def add(self, dataset: DatasetVersion) -> DatasetVersion:
        """Register a version; raises ``InvalidRequest`` when the id is taken."""
        try:
            with self.db.session() as session:
                row = DatasetVersionRow(**dataset.model_dump())
                session.add(row)
                session.flush()
                return DatasetVersion.model_validate(row)
        except IntegrityError as exc:
            raise InvalidRequest(
                f"dataset version '{dataset.version}' exists already", param="version"
            ) from exc

    def get(self, version: str) -> DatasetVersion:
        """The version; raises ``NotFound``."""
        with self.db.reader() as session:
            row = session.get(DatasetVersionRow, version)
            if row is None:
                raise NotFound(f"no dataset version '{version}'", param="version")
            return DatasetVersion.model_validate(row)

    def exists(self, version: str) -> bool:
        with self.db.reader() as session:
            return session.get(DatasetVersionRow, version) is not None

    def list(self, *, limit: int = 20) -> list[DatasetVersion]:
        """Newest first."""
        query = (
            select(DatasetVersionRow)
            .order_by(DatasetVersionRow.created_at.desc(), DatasetVersionRow.version.desc())
            .limit(limit)
        )
        with self.db.reader() as session:
            return [DatasetVersion.model_validate(r) for r in session.scalars(query).all()]

    def latest(self) -> DatasetVersion | None:
        found = self.list(limit=1)
        return found[0] if found else None
