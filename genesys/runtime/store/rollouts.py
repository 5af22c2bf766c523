"""Rollouts: one row per attempt to put a validated adapter in front of users, and its audit trail.

A rollout moves through these states (``genesys.tools.rollout`` decides when; this module only
keeps the rows and refuses a change from a state other than the one the caller expected)::

    awaiting_approval -> running | rejected          (approval: operator)
    running           -> running (next stage) | held | promoted | rolled_back
    held              -> running (resumed) | rolled_back
    promoted, rolled_back, rejected: final

At most one rollout is active (awaiting_approval, running or held). A change of a rollout and the
change of its adapter's registry state (validated -> canary -> production | rolled_back) are written
in one transaction, with an event row (who, when, what, why) for each.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.store.adapters import REGISTRY_LOCK, AdapterState, merge_metrics_in, transition_in
from genesys.runtime.store.db import Base, Database, UtcDateTime, lock_in, utcnow
from genesys.runtime.store.feedback import Feedback, FeedbackRow
from genesys.runtime.store.interactions import InteractionRow

RolloutState = Literal["awaiting_approval", "running", "held", "promoted", "rolled_back", "rejected"]
Approval = Literal["auto", "operator"]
RolloutAction = Literal["start", "approve", "reject", "advance", "hold", "resume", "promote", "rollback"]
ACTIVE_STATES: frozenset[str] = frozenset({"awaiting_approval", "running", "held"})
# States in which the candidate takes traffic.
SERVING_STATES: frozenset[str] = frozenset({"running", "held"})


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    candidate: Mapped[str] = mapped_column(String(64), index=True)
    baseline: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(24), index=True)
    approval: Mapped[str] = mapped_column(String(16))
    stage: Mapped[int] = mapped_column(Integer)
    stages: Mapped[list[float]] = mapped_column(JSON)
    stage_seconds: Mapped[list[float]] = mapped_column(JSON)
    extension_seconds: Mapped[float] = mapped_column(Float)
    traffic: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    last_evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    stage_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    held_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RolloutEventRow(Base):
    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str] = mapped_column(String(64), ForeignKey("rollouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    stage: Mapped[int] = mapped_column(Integer)
    traffic: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)


class Rollout(BaseModel):
    """One rollout of a candidate adapter against the production version it may replace."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    candidate: str = Field(description="The adapter version under test.")
    baseline: str = Field(description="The production version when the rollout started ('base': no adapter).")
    state: RolloutState
    approval: Approval
    stage: int = Field(0, description="Index into stages of the current stage.")
    stages: list[float] = Field(description="Candidate traffic at each stage.")
    stage_seconds: list[float] = Field(description="Length of each stage.")
    extension_seconds: float = Field(
        0, description="Time allowed after the last stage to reach the minimum sample."
    )
    traffic: float = Field(0, description="Share of users on the candidate now (0 until it runs).")
    created_by: str
    reason: str
    outcome: str | None = Field(None, description="Why it ended.")
    last_evaluation: dict[str, Any] | None = Field(None, description="The latest A/B decision (AbDecision).")
    created_at: datetime
    started_at: datetime | None = Field(None, description="When the candidate first took traffic.")
    stage_started_at: datetime | None = None
    held_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def serving(self) -> bool:
        """The candidate takes traffic."""
        return self.state in SERVING_STATES


class RolloutEvent(BaseModel):
    """One audited step of a rollout."""

    model_config = ConfigDict(from_attributes=True)

    rollout_id: str
    at: datetime
    actor: str
    action: RolloutAction
    from_state: RolloutState | None
    to_state: RolloutState
    stage: int
    traffic: float
    reason: str


@dataclass(frozen=True)
class AdapterChange:
    """The registry move that goes with a rollout change, in the same transaction."""

    to_state: AdapterState
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArmSample:
    """One answer of an A/B arm: enough to count errors, latency and what users said about it."""

    interaction_id: str
    status: str
    latency_ms: float
    feedback: list[Feedback]


def new_rollout_id(now: datetime) -> str:
    return f"ro-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class RolloutStore:
    """The rollouts and their events. Thread-safe; writes of one process are serialized."""

    def __init__(self, db: Database) -> None:
        self.db = db
        Base.metadata.create_all(
            db.engine,
            tables=[RolloutRow.__table__, RolloutEventRow.__table__],  # type: ignore[list-item]
        )
        # Check-then-write (one active rollout, the expected state) must not interleave.
        self._lock = threading.RLock()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, rollout_id: str) -> Rollout:
        """The rollout; raises ``NotFound``."""
        with self.db.reader() as session:
            return Rollout.model_validate(_row(session, rollout_id))

    def active(self) -> Rollout | None:
        """The rollout awaiting approval, running or held, if any."""
        with self.db.reader() as session:
            row = _active(session)
            return Rollout.model_validate(row) if row is not None else None

    def latest(self) -> Rollout | None:
        found = self.recent(limit=1)
        return found[0] if found else None

    def recent(self, *, limit: int = 20) -> list[Rollout]:
        """Newest first."""
        query = select(RolloutRow).order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc()).limit(limit)
        with self.db.reader() as session:
            return [Rollout.model_validate(r) for r in session.scalars(query).all()]

    def events(self, rollout_id: str) -> list[RolloutEvent]:
        """The rollout's audit trail, oldest first."""
        query = (
            select(RolloutEventRow)
            .where(RolloutEventRow.rollout_id == rollout_id)
            .order_by(RolloutEventRow.id)
        )
        with self.db.reader() as session:
            return [RolloutEvent.model_validate(r) for r in session.scalars(query).all()]

    def arm_samples(
        self, *, arm: str, model_version: str, since: datetime, until: datetime | None = None
    ) -> list[ArmSample]:
        """The answers the A/B router sent to ``arm`` (production or candidate) and ``model_version``
        answered, created in ``[since, until)``, each with its feedback. Pinned requests are not in it."""
        where = [
            InteractionRow.ab_arm == arm,
            InteractionRow.model_version == model_version,
            InteractionRow.created_at >= since,
        ]
        if until is not None:
            where.append(InteractionRow.created_at < until)
        ids = select(InteractionRow.id).where(*where)
        with self.db.reader() as session:
            rows = session.execute(
                select(InteractionRow.id, InteractionRow.status, InteractionRow.latency_ms)
                .where(*where)
                .order_by(InteractionRow.created_at, InteractionRow.id)
            ).all()
            feedback: dict[str, list[Feedback]] = {}
            for fb in session.scalars(
                select(FeedbackRow).where(FeedbackRow.interaction_id.in_(ids)).order_by(FeedbackRow.id)
            ):
                feedback.setdefault(fb.interaction_id, []).append(Feedback.model_validate(fb))
        return [ArmSample(i, status, float(latency), feedback.get(i, [])) for i, status, latency in rows]

    # -- writing ----------------------------------------------------------------------------------

    def create(
        self, rollout: Rollout, *, actor: str, reason: str, adapter: AdapterChange | None = None
    ) -> Rollout:
        """Add a rollout (and move its candidate in the registry, when ``adapter`` says so).

        Raises ``InvalidRequest`` while another rollout is active, or for a registry move that is
        not allowed; ``NotFound`` for an unknown candidate.
        """
        with self._lock, self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            active = _active(session)
            if active is not None:
                raise InvalidRequest(
                    f"rollout {active.id} of {active.candidate} is still {active.state}; "
                    "finish it (promote, roll back or reject) before starting another",
                    param="candidate",
                    code="rollout_in_progress",
                )
            if adapter is not None:
                _move_adapter(session, rollout.candidate, adapter, actor)
            row = RolloutRow(**rollout.model_dump())
            session.add(row)
            session.flush()
            _event(session, row, None, "start", actor, reason, rollout.created_at)
            return Rollout.model_validate(row)

    def change(
        self,
        rollout_id: str,
        *,
        expected: Collection[str],
        action: RolloutAction,
        actor: str,
        reason: str,
        at: datetime,
        updates: Mapping[str, Any],
        adapter: AdapterChange | None = None,
    ) -> Rollout:
        """Apply ``updates`` to a rollout that is in one of the ``expected`` states, audited as
        ``action`` by ``actor`` for ``reason``; with ``adapter``, move its candidate in the registry in
        the same transaction.

        Raises ``InvalidRequest`` when the rollout is in another state (someone else moved it first)
        or the registry refuses the move; ``NotFound`` for an unknown rollout.
        """
        with self._lock, self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            row = _row(session, rollout_id)
            if row.state not in expected:
                wanted = " or ".join(sorted(expected))
                raise InvalidRequest(
                    f"rollout {row.id} of {row.candidate} is {row.state}; '{action}' needs it {wanted}",
                    code="invalid_rollout_state",
                )
            if adapter is not None:
                _move_adapter(session, row.candidate, adapter, actor)
            from_state = row.state
            for name, value in updates.items():
                setattr(row, name, value)
            row.updated_at = at
            session.flush()
            _event(session, row, from_state, action, actor, reason, at)
            return Rollout.model_validate(row)

    def record_evaluation(self, rollout_id: str, evaluation: dict[str, Any], *, at: datetime) -> None:
        """Keep the latest A/B decision on the rollout (not an event: it is taken at every tick)."""
        with self._lock, self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            row = _row(session, rollout_id)
            row.last_evaluation = evaluation
            row.updated_at = at


def _row(session: Session, rollout_id: str) -> RolloutRow:
    row = session.get(RolloutRow, rollout_id)
    if row is None:
        raise NotFound(f"no rollout '{rollout_id}'", param="rollout_id")
    return row


def _active(session: Session) -> RolloutRow | None:
    query = (
        select(RolloutRow).where(RolloutRow.state.in_(ACTIVE_STATES)).order_by(RolloutRow.created_at.desc())
    )
    return session.scalars(query).first()


def _move_adapter(session: Session, version: str, change: AdapterChange, actor: str) -> None:
    transition_in(session, version, change.to_state, actor=actor, reason=change.reason)
    if change.metrics:
        merge_metrics_in(session, version, change.metrics)


def _event(
    session: Session,
    row: RolloutRow,
    from_state: str | None,
    action: str,
    actor: str,
    reason: str,
    at: datetime | None,
) -> None:
    if not actor.strip() or not reason.strip():
        raise InvalidRequest("every rollout step needs who took it and why", param="actor")
    session.add(
        RolloutEventRow(
            rollout_id=row.id,
            at=at or utcnow(),
            actor=actor,
            action=action,
            from_state=from_state,
            to_state=row.state,
            stage=row.stage,
            traffic=row.traffic,
            reason=reason,
        )
    )
