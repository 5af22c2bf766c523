"""Leases: a named role that one process holds at a time, for a while, across every replica that shares
the database (the society's scheduler is one: ``genesys.runtime.leadership``).

A lease row says who holds it (``holder``, e.g. ``host:pid``) and until when (``expires_at``). Its
holder renews it before it expires; anyone may take it once it has expired. Taking and renewing are
one conditional ``UPDATE`` (or the first ``INSERT``), so of two processes that try at once, exactly one
gets it, on SQLite as on PostgreSQL. ``term`` counts the holders the lease has had (it grows with each
new holder, not with renewals), and ``previous_holder`` names the one before: a new holder knows whose
work it inherits.

The times are the processes' clocks (UTC): replicas on several machines need synchronized clocks
(NTP), and a lease long enough that their skew does not matter.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Integer, String, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    previous_holder: Mapped[str | None] = mapped_column(String(128))
    term: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime())
    renewed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Lease(BaseModel):
    """A lease as stored: its holder (or last holder, once expired) and until when it holds."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    holder: str = Field(description="Who holds it (or held it last): host:pid of a replica.")
    previous_holder: str | None = Field(None, description="The holder before this one.")
    term: int = Field(description="How many holders the lease has had; grows with each new holder.")
    acquired_at: datetime = Field(description="When the current holder took it.")
    renewed_at: datetime
    expires_at: datetime

    def held_by(self, holder: str, now: datetime | None = None) -> bool:
        return self.holder == holder and not self.expired(now)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) >= self.expires_at


class LeaseStore:
    """The leases table. Every method is one short transaction; safe from several processes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[LeaseRow.__table__])  # type: ignore[list-item]

    def get(self, name: str) -> Lease | None:
        with self.db.reader() as session:
            row = session.get(LeaseRow, name)
            return Lease.model_validate(row) if row is not None else None

    def acquire(
        self, name: str, holder: str, *, ttl_seconds: float, now: datetime | None = None
    ) -> Lease | None:
        """Take the lease ``name`` for ``holder`` (or renew it, when ``holder`` has it) until ``now +
        ttl_seconds``; returns it when ``holder`` holds it now, None while another holder's lease runs."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        now = now or utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        same = LeaseRow.holder == holder
        try:
            with self.db.session() as session:
                result = session.execute(
                    update(LeaseRow)
                    .where(LeaseRow.name == name, or_(same, LeaseRow.expires_at <= now))
                    .values(
                        holder=holder,
                        previous_holder=case((same, LeaseRow.previous_holder), else_=LeaseRow.holder),
                        term=case((same, LeaseRow.term), else_=LeaseRow.term + 1),
                        acquired_at=case((same, LeaseRow.acquired_at), else_=now),
                        renewed_at=now,
                        expires_at=expires,
                    )
                    .execution_options(synchronize_session=False)
                )
                if not getattr(result, "rowcount", 0):
                    if session.scalar(select(LeaseRow.name).where(LeaseRow.name == name)) is not None:
                        return None  # another holder's lease runs
                    session.add(
                        LeaseRow(
                            name=name,
                            holder=holder,
                            previous_holder=None,
                            term=1,
                            acquired_at=now,
                            renewed_at=now,
                            expires_at=expires,
                        )
                    )
                    session.flush()
                row = session.get(LeaseRow, name, populate_existing=True)
                return Lease.model_validate(row) if row is not None and row.holder == holder else None
        except IntegrityError:  # another process inserted the first row at the same moment
            return None

    def release(self, name: str, holder: str, *, now: datetime | None = None) -> bool:
        """End ``holder``'s lease now (a clean shutdown), so that another takes over at once; True when
        ``holder`` held it. The row keeps its last holder."""
        now = now or utcnow()
        with self.db.session() as session:
            result = session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder, LeaseRow.expires_at > now)
                .values(expires_at=now)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))
