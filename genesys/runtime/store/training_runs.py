"""Training runs: one row per run (its state, spec, chosen hyperparameters, latest progress, result) and
one progress row per logging step.

The worker subprocess writes progress and its own end; the process that started it (``RunManager``)
writes the end that the worker cannot write itself (killed by a signal, out of memory). A run ends
once: ``finish`` only changes a run that is not already finished, so the two writers never overwrite
each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from genesys.errors import NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime, utcnow

RunState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class TrainingRunRow(Base):
    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    phase: Mapped[str | None] = mapped_column(String(32))
    dataset_version: Mapped[str | None] = mapped_column(String(128), index=True)
    base_model: Mapped[str | None] = mapped_column(Text)
    output_dir: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    pid: Mapped[int | None] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    hyperparameters: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reasons: Mapped[list[str] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    adapter_dir: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    step: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class TrainingProgressRow(Base):
    __tablename__ = "training_run_progress"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("training_runs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    total_steps: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    loss: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class TrainingProgress(BaseModel):
    """One logging step of a run: where it is, how it is doing, how fast, how long to go."""

    model_config = ConfigDict(from_attributes=True)

    stage: str = Field("sft", description="'sft', or the corrective stage: 'dpo', 'kto'.")
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    at: datetime = Field(default_factory=utcnow)


class TrainingRun(BaseModel):
    """A training run as stored: what was asked, what was chosen, where it is, how it ended."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    state: RunState = "queued"
    phase: str | None = Field(None, description="What the worker is doing: loading, sft, dpo, saving, ...")
    dataset_version: str | None = None
    base_model: str | None = None
    output_dir: str
    spec: dict[str, Any] = Field(default_factory=dict)
    pid: int | None = None
    cancel_requested: bool = False
    hyperparameters: dict[str, Any] | None = None
    reasons: list[str] | None = None
    metrics: dict[str, Any] | None = None
    adapter_dir: str | None = None
    error: str | None = None
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class TrainingRunStore:
    """Runs and their progress. Every method is one short transaction; safe from several processes."""

    def __init__(self, db: Database) -> None:
        self.db = db
        tables = [TrainingRunRow.__table__, TrainingProgressRow.__table__]
        Base.metadata.create_all(db.engine, tables=tables)  # type: ignore[arg-type]

    def create(self, run: TrainingRun) -> TrainingRun:
        """Insert a new run; raises ``sqlalchemy.exc.IntegrityError`` when the id is taken."""
        with self.db.session() as session:
            row = TrainingRunRow(**run.model_dump())
            session.add(row)
            session.flush()
            return TrainingRun.model_validate(row)

    def get(self, run_id: str) -> TrainingRun:
        """The run; raises ``NotFound`` for an unknown id."""
        with self.db.reader() as session:
            row = session.get(TrainingRunRow, run_id)
            if row is None:
                raise NotFound(f"no training run '{run_id}'", param="run_id")
            return TrainingRun.model_validate(row)

    def recent(self, *, state: RunState | None = None, limit: int = 100) -> list[TrainingRun]:
        """Newest first."""
        query = select(TrainingRunRow).order_by(TrainingRunRow.created_at.desc()).limit(limit)
        if state is not None:
            query = query.where(TrainingRunRow.state == state)
        with self.db.reader() as session:
            return [TrainingRun.model_validate(r) for r in session.scalars(query).all()]

    def count_by_state(self) -> dict[str, int]:
        """How many runs are in each state."""
        query = select(TrainingRunRow.state, func.count()).group_by(TrainingRunRow.state)
        with self.db.reader() as session:
            return {state: int(n) for state, n in session.execute(query)}

    def mark_running(self, run_id: str, *, pid: int | None = None, phase: str | None = None) -> bool:
        """queued -> running (or update pid/phase of a running run); False when the run already ended."""
        values: dict[str, Any] = {"state": "running", "updated_at": utcnow()}
        if pid is not None:
            values["pid"] = pid
        if phase is not None:
            values["phase"] = phase
        with self.db.session() as session:
            row = session.get(TrainingRunRow, run_id)
            if row is None:
                raise NotFound(f"no training run '{run_id}'", param="run_id")
            if row.state in TERMINAL_STATES:
                return False
            if row.started_at is None:
                values["started_at"] = utcnow()
            for key, value in values.items():
                setattr(row, key, value)
            return True

    def set_phase(self, run_id: str, phase: str) -> None:
        self._update_open(run_id, phase=phase)

    def set_hyperparameters(self, run_id: str, values: dict[str, Any], reasons: list[str]) -> None:
        self._update_open(run_id, hyperparameters=values, reasons=reasons)

    def add_progress(self, run_id: str, progress: TrainingProgress) -> None:
        """Append a progress row and copy it onto the run, so the latest state is one read away."""
        with self.db.session() as session:
            session.add(TrainingProgressRow(run_id=run_id, **progress.model_dump()))
            latest = {
                "step": progress.step,
                "total_steps": progress.total_steps,
                "epoch": progress.epoch,
                "loss": progress.loss,
                "tokens_per_s": progress.tokens_per_s,
                "eta_s": progress.eta_s,
                "updated_at": progress.at,
            }
            if progress.eval_loss is not None:
                latest["eval_loss"] = progress.eval_loss
            # A value that was not logged this time keeps the last one (an eval step has no train loss).
            latest = {k: v for k, v in latest.items() if v is not None}
            session.execute(
                update(TrainingRunRow)
                .where(TrainingRunRow.id == run_id, TrainingRunRow.state.not_in(TERMINAL_STATES))
                .values(**latest)
            )

    def progress(self, run_id: str, *, stage: str | None = None) -> list[TrainingProgress]:
        """Every progress row of a run, oldest first."""
        query = select(TrainingProgressRow).where(TrainingProgressRow.run_id == run_id)
        if stage is not None:
            query = query.where(TrainingProgressRow.stage == stage)
        with self.db.reader() as session:
            rows = session.scalars(query.order_by(TrainingProgressRow.id)).all()
            return [TrainingProgress.model_validate(r) for r in rows]

    def request_cancel(self, run_id: str) -> bool:
        """Flag a run as cancelled by request; False when it already ended."""
        return self._update_open(run_id, cancel_requested=True)

    def finish(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        metrics: dict[str, Any] | None = None,
        adapter_dir: str | None = None,
    ) -> bool:
        """End a run; False (and nothing changed) when it had already ended.

        Raises ``ValueError`` for a state that is not an end state.
        """
        if state not in TERMINAL_STATES:
            raise ValueError(f"'{state}' is not an end state; use one of {sorted(TERMINAL_STATES)}")
        values: dict[str, Any] = {"state": state, "finished_at": utcnow(), "error": error, "phase": None}
        if metrics is not None:
            values["metrics"] = metrics
        if adapter_dir is not None:
            values["adapter_dir"] = adapter_dir
        values["eta_s"] = 0.0 if state == "succeeded" else None
        return self._update_open(run_id, **values)

    def _update_open(self, run_id: str, **values: Any) -> bool:
        """Update a run that has not ended, in one statement (atomic against the other writer)."""
        values.setdefault("updated_at", utcnow())
        with self.db.session() as session:
            result = session.execute(
                update(TrainingRunRow)
                .where(TrainingRunRow.id == run_id, TrainingRunRow.state.not_in(TERMINAL_STATES))
                .values(**values)
            )
            changed = bool(result.rowcount)  # type: ignore[attr-defined]
            if not changed and session.get(TrainingRunRow, run_id) is None:
                raise NotFound(f"no training run '{run_id}'", param="run_id")
            return changed
