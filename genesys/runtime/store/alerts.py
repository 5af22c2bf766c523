"""Alerts: one row per firing of an alert rule, from the moment it fires until it resolves.

At most one alert is open (``firing``) per rule and key, across processes: an open alert holds the
``open_slot`` column (1; unique with rule and key), a resolved one releases it (NULL, which a unique
constraint lets repeat). Evaluating a rule again while its alert is open updates ``last_seen_at``,
the value and the summary; it does not add a row. ``genesys.tools.alerts`` decides when an alert
fires or resolves and which actions it takes; this module keeps the rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Float, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from genesys.errors import NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime
from genesys.runtime.store.interactions import InteractionRow

AlertKind = Literal["performance_drop", "critical_failure", "training_needed", "anomaly"]
ALERT_KINDS: tuple[AlertKind, ...] = ("performance_drop", "critical_failure", "training_needed", "anomaly")
AlertState = Literal["firing", "resolved"]
Severity = Literal["info", "warning", "critical"]


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("rule", "key", "open_slot", name="uq_alert_open"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(128))
    open_slot: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class AlertActionRecord(BaseModel):
    """One automatic action an alert took, and how it went."""

    action: str = Field(description="retrain, rollback, notify or report.")
    event: AlertState = Field(description="The change that ran it: the alert firing or resolving.")
    status: Literal["done", "skipped", "failed"]
    detail: str = Field(description="What happened: the cycle started, the rollout rolled back, the file.")
    at: datetime


class Alert(BaseModel):
    """An alert as stored."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    rule: str = Field(description="The rule that fired, e.g. error_rate, kpi_breached.")
    key: str = Field(description="What the rule fired about (a KPI, a run id, 'all'); one open alert each.")
    kind: AlertKind
    severity: Severity
    state: AlertState
    summary: str
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    actions: list[AlertActionRecord] = Field(default_factory=list)
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None


class RequestSample(BaseModel):
    """The columns of an interaction the rules look at (no messages: a window may hold many)."""

    created_at: datetime
    status: str
    latency_ms: float


def new_alert_id(now: datetime) -> str:
    return f"al-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class AlertStore:
    """The alerts table. Every method is one short transaction; safe from several processes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(db.engine, tables=[AlertRow.__table__])  # type: ignore[list-item]

    # -- reading ----------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        """The alert; raises ``NotFound``."""
        with self.db.reader() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert '{alert_id}'", param="alert_id")
            return Alert.model_validate(row)

    def recent(self, *, state: AlertState | None = None, limit: int = 100) -> list[Alert]:
        """Newest first (by the time they fired)."""
        query = select(AlertRow).order_by(AlertRow.started_at.desc(), AlertRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(AlertRow.state == state)
        with self.db.reader() as session:
            return [Alert.model_validate(r) for r in session.scalars(query).all()]

    def open(self) -> list[Alert]:
        """Every firing alert, oldest first."""
        query = select(AlertRow).where(AlertRow.state == "firing").order_by(AlertRow.started_at, AlertRow.id)
        with self.db.reader() as session:
            return [Alert.model_validate(r) for r in session.scalars(query).all()]

    def firing_counts(self) -> dict[str, int]:
        """Firing alerts by kind (every kind, 0 when none)."""
        query = select(AlertRow.kind, func.count()).where(AlertRow.state == "firing").group_by(AlertRow.kind)
        counts: dict[str, int] = dict.fromkeys(ALERT_KINDS, 0)
        with self.db.reader() as session:
            for kind, count in session.execute(query):
                counts[kind] = int(count)
        return counts

    def requests(self, since: datetime, until: datetime) -> list[RequestSample]:
        """Created time, status and latency of the interactions created in ``[since, until)``."""
        query = (
            select(InteractionRow.created_at, InteractionRow.status, InteractionRow.latency_ms)
            .where(InteractionRow.created_at >= since, InteractionRow.created_at < until)
            .order_by(InteractionRow.created_at)
        )
        with self.db.reader() as session:
            return [
                RequestSample(created_at=at, status=status, latency_ms=float(latency))
                for at, status, latency in session.execute(query)
            ]

    # -- writing ----------------------------------------------------------------------------------

    def fire(
        self,
        *,
        rule: str,
        key: str,
        kind: AlertKind,
        severity: Severity,
        summary: str,
        value: float | None,
        threshold: float | None,
        details: dict[str, Any],
        now: datetime,
    ) -> tuple[Alert, bool]:
        """Open an alert for ``(rule, key)``, or refresh the open one; returns it and whether it is new.

        Of two processes that fire the same alert at once, one creates it and the other refreshes it.
        """
        refresh = {
            "severity": severity,
            "summary": summary,
            "value": value,
            "threshold": threshold,
            "details": details,
            "last_seen_at": now,
        }
        for _ in range(2):
            with self.db.session() as session:
                row = session.scalars(
                    select(AlertRow).where(
                        AlertRow.rule == rule, AlertRow.key == key, AlertRow.open_slot.is_not(None)
                    )
                ).first()
                if row is not None:
                    for name, change in refresh.items():
                        setattr(row, name, change)
                    session.flush()
                    return Alert.model_validate(row), False
            try:
                with self.db.session() as session:
                    row = AlertRow(
                        id=new_alert_id(now),
                        rule=rule,
                        key=key,
                        open_slot=1,
                        kind=kind,
                        state="firing",
                        actions=[],
                        started_at=now,
                        resolved_at=None,
                        **refresh,
                    )
                    session.add(row)
                    session.flush()
                    return Alert.model_validate(row), True
            except IntegrityError:  # another process opened it between the two statements
                continue
        raise RuntimeError(f"alert {rule}/{key} could neither be opened nor found")  # pragma: no cover

    def resolve(self, alert_id: str, *, now: datetime) -> Alert | None:
        """Close a firing alert; None when it was not firing (another process resolved it first)."""
        with self.db.session() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert '{alert_id}'", param="alert_id")
            if row.state != "firing":
                return None
            row.state = "resolved"
            row.open_slot = None
            row.resolved_at = now
            row.last_seen_at = max(row.last_seen_at, now)
            session.flush()
            return Alert.model_validate(row)

    def add_actions(self, alert_id: str, records: list[AlertActionRecord]) -> Alert:
        """Append what the alert's actions did."""
        with self.db.session() as session:
            row = session.get(AlertRow, alert_id)
            if row is None:
                raise NotFound(f"no alert '{alert_id}'", param="alert_id")
            row.actions = [*(row.actions or []), *(r.model_dump(mode="json") for r in records)]
            session.flush()
            return Alert.model_validate(row)
