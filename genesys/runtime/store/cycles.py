"""Learning cycles of the society: one row per cycle (its state, saved team state, prompt versions, outcome)
and one row per message its agents sent, in order.

At most one cycle is active at a time, across processes: an active cycle holds the ``active_slot``
column (1, unique); an ended one releases it (NULL, which a unique index lets repeat). Claiming the
slot is one insert, so two processes that both saw no active cycle cannot both start one: the second
insert fails and gets ``CycleInProgress``.

A cycle's states::

    running      its process runs it (``owner``; ``heartbeat_at`` says it is alive)
    interrupted  its process stopped it at shutdown; resumed from ``team_state`` at the next start
    completed    the Deploy agent started (or queued) a rollout
    stopped      an agent stopped it with a reason (too little data, a failed run, a rejected candidate)
    failed       the machinery failed (an exception); ``reason`` says what

A ``running`` cycle whose owner died (a crash, ``kill -9``) is resumed like an interrupted one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow
from genesys.runtime.store.interactions import InteractionRow

CycleState = Literal["running", "interrupted", "completed", "stopped", "failed"]
CycleTrigger = Literal["threshold", "operator", "cli", "alert", "test"]
ACTIVE_CYCLE_STATES: frozenset[str] = frozenset({"running", "interrupted"})
MessageKind = Literal["chat", "event", "note"]


class CycleInProgress(InvalidRequest):
    """A cycle is active already: one cycle runs at a time."""

    def __init__(self, message: str, *, cycle_id: str | None = None) -> None:
        super().__init__(message, code="cycle_in_progress")
        self.cycle_id = cycle_id


class CycleRow(Base):
    __tablename__ = "cycles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True)
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    step: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    prompt_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    warnings: Mapped[list[str]] = mapped_column(JSON)
    results: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    team_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    resumes: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(128))
    interactions_at_start: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CycleMessageRow(Base):
    __tablename__ = "cycle_messages"
    __table_args__ = (UniqueConstraint("cycle_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(String(64), ForeignKey("cycles.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(96))
    kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime())


class Cycle(BaseModel):
    """One learning cycle of the society, as stored (without its saved team state)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    trigger: CycleTrigger
    requested_by: str = Field(description="Who or what started it: an operator's key name, the scheduler.")
    reason: str = Field(description="Why it was started.")
    mode: Literal["policy", "llm"]
    state: CycleState
    step: str | None = Field(None, description="The agent speaking now, or the last one that spoke.")
    outcome: str | None = Field(
        None,
        description="How it ended: no_data, training_failed, validation_failed, rejected, deployed, "
        "awaiting_approval, deploy_refused, error.",
    )
    outcome_reason: str | None = Field(None, description="Why, in the words of the agent that ended it.")
    options: dict[str, Any] = Field(default_factory=dict)
    prompt_versions: dict[str, str] = Field(
        default_factory=dict, description="The version (short hash) of each prompt the cycle used."
    )
    warnings: list[str] = Field(default_factory=list, description="E.g. a prompt file refused.")
    results: dict[str, Any] = Field(
        default_factory=dict,
        description="What the cycle produced: dataset_version, run_id, candidate, rollout_id.",
    )
    progress: dict[str, Any] | None = Field(None, description="The latest progress of a long step.")
    turns: int = Field(0, description="Agent turns completed (and saved).")
    resumes: int = Field(0, description="How many times it was resumed after a restart.")
    owner: str | None = Field(None, description="host:pid of the process running it.")
    interactions_at_start: int = 0
    created_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_CYCLE_STATES


class CycleMessage(BaseModel):
    """One message of a cycle: an agent's report (chat), a tool call or result (event), or a note of
    the runner (a resume, a refused prompt)."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    source: str
    type: str = Field(description="The autogen message type, e.g. StructuredMessage[AnalystReport].")
    kind: MessageKind
    text: str
    payload: dict[str, Any] = Field(description="The whole message as autogen dumps it (loadable back).")
    at: datetime


def new_cycle_id(now: datetime) -> str:
    return f"cy-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class CycleStore:
    """The cycles and their messages. Every method is one short transaction; safe from several
    processes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        tables = [CycleRow.__table__, CycleMessageRow.__table__]
        Base.metadata.create_all(db.engine, tables=tables)  # type: ignore[arg-type]

    # -- reading ----------------------------------------------------------------------------------

    def get(self, cycle_id: str) -> Cycle:
        """The cycle; raises ``NotFound``."""
        with self.db.reader() as session:
            row = session.get(CycleRow, cycle_id)
            if row is None:
                raise NotFound(f"no cycle '{cycle_id}'", param="cycle_id")
            return Cycle.model_validate(row)

    def team_state(self, cycle_id: str) -> dict[str, Any] | None:
        """The team state saved after the cycle's last completed turn (None before the first)."""
        with self.db.reader() as session:
            row = session.get(CycleRow, cycle_id)
            if row is None:
                raise NotFound(f"no cycle '{cycle_id}'", param="cycle_id")
            return row.team_state

    def active(self) -> Cycle | None:
        """The cycle running or interrupted, if any."""
        with self.db.reader() as session:
            row = session.scalars(select(CycleRow).where(CycleRow.active_slot.is_not(None))).first()
            return Cycle.model_validate(row) if row is not None else None

    def latest(self) -> Cycle | None:
        found = self.recent(limit=1)
        return found[0] if found else None

    def recent(self, *, limit: int = 20, offset: int = 0) -> list[Cycle]:
        """Newest first."""
        query = (
            select(CycleRow)
            .order_by(CycleRow.created_at.desc(), CycleRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.db.reader() as session:
            return [Cycle.model_validate(r) for r in session.scalars(query).all()]

    def count(self) -> int:
        with self.db.reader() as session:
            return int(session.scalar(select(func.count()).select_from(CycleRow)) or 0)

    def messages(self, cycle_id: str) -> list[CycleMessage]:
        """The cycle's messages in the order they were sent."""
        query = (
            select(CycleMessageRow).where(CycleMessageRow.cycle_id == cycle_id).order_by(CycleMessageRow.seq)
        )
        with self.db.reader() as session:
            return [CycleMessage.model_validate(r) for r in session.scalars(query).all()]

    def interactions_since(self, moment: datetime | None) -> int:
        """Interactions created at or after ``moment`` (all of them for None)."""
        query = select(func.count()).select_from(InteractionRow)
        if moment is not None:
            query = query.where(InteractionRow.created_at >= moment)
        with self.db.reader() as session:
            return int(session.scalar(query) or 0)

    # -- writing ----------------------------------------------------------------------------------

    def claim(self, cycle: Cycle) -> Cycle:
        """Insert ``cycle`` as the active one. Raises ``CycleInProgress`` while another is active."""
        try:
            with self.db.session() as session:
                row = CycleRow(**cycle.model_dump(), active_slot=1, team_state=None)
                session.add(row)
                session.flush()
                return Cycle.model_validate(row)
        except IntegrityError:
            active = self.active()
            if active is None:  # it ended between the two statements: the caller may try again
                raise CycleInProgress("another cycle was starting at the same moment; try again") from None
            raise CycleInProgress(
                f"cycle {active.id} is {active.state} (step: {active.step or 'starting'}, started "
                f"{active.created_at:%Y-%m-%d %H:%M:%S} UTC by {active.requested_by}); one cycle runs at a "
                "time: wait for it to end",
                cycle_id=active.id,
            ) from None

    def take_over(self, cycle_id: str, *, owner: str, expected_owner: str | None) -> bool:
        """Make ``owner`` run the active cycle if its owner is still ``expected_owner`` (so that of two
        processes resuming it, one wins); True when taken."""
        now = utcnow()
        with self.db.session() as session:
            result = session.execute(
                update(CycleRow)
                .where(
                    CycleRow.id == cycle_id,
                    CycleRow.active_slot.is_not(None),
                    CycleRow.owner.is_(None) if expected_owner is None else CycleRow.owner == expected_owner,
                )
                .values(owner=owner, state="running", heartbeat_at=now, resumes=CycleRow.resumes + 1)
            )
            return bool(getattr(result, "rowcount", 0))

    def update(self, cycle_id: str, **values: Any) -> None:
        """Set columns of a cycle (and its heartbeat)."""
        values.setdefault("heartbeat_at", utcnow())
        with self.db.session() as session:
            session.execute(update(CycleRow).where(CycleRow.id == cycle_id).values(**values))

    def merge_results(self, cycle_id: str, results: dict[str, Any]) -> None:
        """Add keys to the cycle's results (dataset_version, run_id, candidate, rollout_id)."""
        with self.db.session() as session:
            row = session.get(CycleRow, cycle_id)
            if row is None:
                raise NotFound(f"no cycle '{cycle_id}'", param="cycle_id")
            row.results = {**(row.results or {}), **results}
            row.heartbeat_at = utcnow()

    def save_turn(self, cycle_id: str, *, team_state: dict[str, Any], turns: int) -> None:
        """Keep the team state after a completed turn: a restart resumes from here."""
        self.update(cycle_id, team_state=team_state, turns=turns)

    def finish(
        self,
        cycle_id: str,
        *,
        state: CycleState,
        outcome: str,
        reason: str,
        team_state: dict[str, Any] | None = None,
        turns: int | None = None,
    ) -> Cycle:
        """End the cycle (completed, stopped or failed) and release the active slot."""
        if state in ACTIVE_CYCLE_STATES:
            raise ValueError(f"{state} is not an end state")
        now = utcnow()
        with self.db.session() as session:
            row = session.get(CycleRow, cycle_id)
            if row is None:
                raise NotFound(f"no cycle '{cycle_id}'", param="cycle_id")
            row.state = state
            row.outcome = outcome
            row.outcome_reason = reason
            row.active_slot = None
            row.ended_at = now
            row.heartbeat_at = now
            if team_state is not None:
                row.team_state = team_state
            if turns is not None:
                row.turns = turns
            session.flush()
            return Cycle.model_validate(row)

    def add_message(
        self,
        cycle_id: str,
        *,
        source: str,
        type: str,
        kind: MessageKind,
        text: str,
        payload: dict[str, Any],
    ) -> CycleMessage:
        """Append a message after the cycle's last one."""
        now = utcnow()
        with self.db.session() as session:
            last = session.scalar(
                select(func.max(CycleMessageRow.seq)).where(CycleMessageRow.cycle_id == cycle_id)
            )
            row = CycleMessageRow(
                cycle_id=cycle_id,
                seq=(last + 1) if last is not None else 0,
                source=source,
                type=type,
                kind=kind,
                text=text,
                payload=payload,
                at=now,
            )
            session.add(row)
            session.execute(update(CycleRow).where(CycleRow.id == cycle_id).values(heartbeat_at=now))
            session.flush()
            return CycleMessage.model_validate(row)
