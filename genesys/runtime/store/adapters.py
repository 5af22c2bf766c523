"""The adapter registry: every trained LoRA version, its lineage, its state, and every state change.

States and the moves between them (anything else raises ``InvalidRequest``)::

    candidate   -> validated | rejected
    validated   -> canary | production | rejected | retired
    canary      -> production | rolled_back
    production  -> retired | rolled_back
    retired     -> production          (restoring a backup)
    rolled_back -> retired
    rejected    -> (none)

At most one version is in production and at most one in canary. ``promote`` retires the production
version it replaces and flags it as *the* backup, which ``rollback`` restores. Every change is written
to ``adapter_transitions`` with who made it, when and why, in the same transaction as the change.
The files of a version live in ``data/adapters/<version>/``; this module keeps only the rows.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from genesys.errors import InvalidRequest, NotFound
from genesys.runtime.store.db import Base, Database, UtcDateTime, lock_in, utcnow

AdapterState = Literal["candidate", "validated", "rejected", "canary", "production", "retired", "rolled_back"]

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "candidate": frozenset({"validated", "rejected"}),
    "validated": frozenset({"canary", "production", "rejected", "retired"}),
    "canary": frozenset({"production", "rolled_back"}),
    "production": frozenset({"retired", "rolled_back"}),
    "retired": frozenset({"production"}),
    "rolled_back": frozenset({"retired"}),
    "rejected": frozenset(),
}
# The A/B router's name for "no adapter"; a version may not take it.
RESERVED_VERSIONS = frozenset({"base"})
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_AUTO_VERSION_RE = re.compile(r"^v(\d+)$")
# Changes of the registry and of the rollouts (which move adapters) take turns across replicas.
REGISTRY_LOCK = "genesys.registry"


class AdapterVersionRow(Base):
    __tablename__ = "adapter_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    is_backup: Mapped[bool] = mapped_column(Boolean, default=False)
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    dataset_version: Mapped[str | None] = mapped_column(String(128), index=True)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_version: Mapped[str | None] = mapped_column(String(64))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AdapterTransitionRow(Base):
    __tablename__ = "adapter_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(64), ForeignKey("adapter_versions.version"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AdapterVersion(BaseModel):
    """One trained adapter and where it came from."""

    model_config = ConfigDict(from_attributes=True)

    version: str
    state: AdapterState = "candidate"
    is_backup: bool = Field(False, description="The production version that the last promotion replaced.")
    path: str = Field(description="Directory of the adapter files: data/adapters/<version>.")
    base_model: str = Field(description="What the adapter was trained on (path or name of the base).")
    dataset_version: str | None = None
    run_id: str | None = None
    parent_version: str | None = Field(None, description="The production version when this one was trained.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AdapterTransition(BaseModel):
    """One audited state change."""

    model_config = ConfigDict(from_attributes=True)

    version: str
    from_state: AdapterState | None
    to_state: AdapterState
    actor: str
    reason: str
    at: datetime


def check_transition(version: str, from_state: str, to_state: str) -> None:
    """Raise ``InvalidRequest`` unless ``from_state -> to_state`` is an allowed move."""
    allowed = ALLOWED_TRANSITIONS.get(from_state, frozenset())
    if to_state not in allowed:
        options = ", ".join(sorted(allowed)) or "none"
        raise InvalidRequest(
            f"adapter {version}: {from_state} -> {to_state} is not allowed (from {from_state}: {options})",
            param="state",
            code="invalid_transition",
        )


class AdapterRegistry:
    """Versions, their states and the audit trail, over the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        tables = [AdapterVersionRow.__table__, AdapterTransitionRow.__table__]
        Base.metadata.create_all(db.engine, tables=tables)  # type: ignore[arg-type]

    # -- reading ----------------------------------------------------------------------------------

    def get(self, version: str) -> AdapterVersion:
        """The version; raises ``NotFound``."""
        with self.db.reader() as session:
            return AdapterVersion.model_validate(_row(session, version))

    def versions(self, *, state: AdapterState | None = None) -> list[AdapterVersion]:
        """Oldest first."""
        query = select(AdapterVersionRow).order_by(AdapterVersionRow.created_at, AdapterVersionRow.version)
        if state is not None:
            query = query.where(AdapterVersionRow.state == state)
        with self.db.reader() as session:
            return [AdapterVersion.model_validate(r) for r in session.scalars(query).all()]

    def production(self) -> AdapterVersion | None:
        """The version in production, or None when the base model serves alone."""
        found = self.versions(state="production")
        return found[0] if found else None

    def canary(self) -> AdapterVersion | None:
        found = self.versions(state="canary")
        return found[0] if found else None

    def backup(self) -> AdapterVersion | None:
        """The production version that the last promotion replaced, if it is still retired."""
        with self.db.reader() as session:
            row = session.scalars(
                select(AdapterVersionRow).where(
                    AdapterVersionRow.is_backup.is_(True), AdapterVersionRow.state == "retired"
                )
            ).first()
            return AdapterVersion.model_validate(row) if row is not None else None

    def transitions(self, version: str | None = None) -> list[AdapterTransition]:
        """The audit trail, oldest first; of one version or of all."""
        query = select(AdapterTransitionRow).order_by(AdapterTransitionRow.id)
        if version is not None:
            query = query.where(AdapterTransitionRow.version == version)
        with self.db.reader() as session:
            return [AdapterTransition.model_validate(r) for r in session.scalars(query).all()]

    def next_version(self) -> str:
        """``v<N+1>`` after the highest ``v<N>`` registered (``v1`` for the first)."""
        with self.db.reader() as session:
            names = session.scalars(select(AdapterVersionRow.version)).all()
        numbers = [int(m.group(1)) for name in names if (m := _AUTO_VERSION_RE.match(name))]
        return f"v{max(numbers, default=0) + 1}"

    # -- writing ----------------------------------------------------------------------------------

    def register(self, adapter: AdapterVersion, *, actor: str, reason: str) -> AdapterVersion:
        """Add a new version as a candidate.

        Raises ``InvalidRequest`` for a malformed, reserved or taken version name, a state other than
        candidate, or an unknown parent.
        """
        if adapter.version in RESERVED_VERSIONS or not _VERSION_RE.match(adapter.version):
            raise InvalidRequest(
                f"'{adapter.version}' cannot name an adapter version (letters, digits, '.', '_', '-'; "
                f"not {', '.join(sorted(RESERVED_VERSIONS))})",
                param="version",
            )
        if adapter.state != "candidate":
            raise InvalidRequest("a new adapter version starts as a candidate", param="state")
        now = utcnow()
        try:
            with self.db.session() as session:
                if adapter.parent_version is not None:
                    _row(session, adapter.parent_version)
                row = AdapterVersionRow(**adapter.model_dump() | {"is_backup": False, "updated_at": now})
                session.add(row)
                session.flush()
                _audit(session, adapter.version, None, "candidate", actor, reason)
                return AdapterVersion.model_validate(row)
        except IntegrityError as exc:
            raise InvalidRequest(
                f"adapter version '{adapter.version}' exists already", param="version"
            ) from exc

    def set_metrics(self, version: str, metrics: dict[str, Any]) -> AdapterVersion:
        """Merge ``metrics`` into the version's metrics (validation scores, A/B results)."""
        with self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            row = _row(session, version)
            row.metrics = {**row.metrics, **metrics}
            row.updated_at = utcnow()
            return AdapterVersion.model_validate(row)

    def transition(self, version: str, to_state: AdapterState, *, actor: str, reason: str) -> AdapterVersion:
        """Move one version to ``to_state``, audited.

        Use ``promote`` to reach production (it retires the current one) and ``rollback`` to leave it.
        Raises ``InvalidRequest`` for a move that is not allowed, ``NotFound`` for an unknown version.
        """
        if to_state == "production":
            return self.promote(version, actor=actor, reason=reason)
        with self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            return transition_in(session, version, to_state, actor=actor, reason=reason)

    def promote(self, version: str, *, actor: str, reason: str) -> AdapterVersion:
        """Put ``version`` in production; the version it replaces is retired and kept as the backup.

        ``version`` must be validated, in canary, or retired (restoring an older version).
        Raises ``InvalidRequest`` otherwise (a candidate must be validated first).
        """
        with self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            return promote_in(session, version, actor=actor, reason=reason)

    def rollback(self, *, actor: str, reason: str) -> AdapterVersion | None:
        """Take the production version out (rolled_back) and restore the backup; returns the new
        production version, or None when there was no backup (the base model then serves alone).

        Raises ``InvalidRequest`` when nothing is in production.
        """
        with self.db.session() as session:
            lock_in(session, REGISTRY_LOCK)
            current = _in_state(session, "production")
            if current is None:
                raise InvalidRequest("nothing is in production to roll back", code="invalid_transition")
            backup = session.scalars(
                select(AdapterVersionRow).where(
                    AdapterVersionRow.is_backup.is_(True), AdapterVersionRow.state == "retired"
                )
            ).first()
            _move(session, current, "rolled_back", actor, reason)
            if backup is None:
                return None
            backup.is_backup = False
            _move(session, backup, "production", actor, f"restored after rolling back {current.version}")
            return AdapterVersion.model_validate(backup)


# -- changes inside a caller's transaction (the rollout store moves an adapter and its rollout at once) --


def transition_in(
    session: Session, version: str, to_state: AdapterState, *, actor: str, reason: str
) -> AdapterVersion:
    """``AdapterRegistry.transition`` inside ``session``'s transaction; same rules, same errors."""
    if to_state == "production":
        return promote_in(session, version, actor=actor, reason=reason)
    row = _row(session, version)
    check_transition(version, row.state, to_state)
    if to_state == "canary":
        _refuse_second(session, "canary", version)
    _move(session, row, to_state, actor, reason)
    return AdapterVersion.model_validate(row)


def promote_in(session: Session, version: str, *, actor: str, reason: str) -> AdapterVersion:
    """``AdapterRegistry.promote`` inside ``session``'s transaction; same rules, same errors."""
    row = _row(session, version)
    check_transition(version, row.state, "production")
    current = _in_state(session, "production")
    if current is not None:
        _move(session, current, "retired", actor, f"replaced by {version}: {reason}")
        _clear_backup(session)
        current.is_backup = True
    row.is_backup = False
    _move(session, row, "production", actor, reason)
    return AdapterVersion.model_validate(row)


def get_in(session: Session, version: str) -> AdapterVersion:
    """The version as ``session`` sees it; raises ``NotFound``."""
    return AdapterVersion.model_validate(_row(session, version))


def production_in(session: Session) -> AdapterVersion | None:
    """The version in production as ``session`` sees it."""
    row = _in_state(session, "production")
    return AdapterVersion.model_validate(row) if row is not None else None


def merge_metrics_in(session: Session, version: str, metrics: dict[str, Any]) -> None:
    """``AdapterRegistry.set_metrics`` inside ``session``'s transaction."""
    row = _row(session, version)
    row.metrics = {**row.metrics, **metrics}
    row.updated_at = utcnow()


def _row(session: Session, version: str) -> AdapterVersionRow:
    row = session.get(AdapterVersionRow, version)
    if row is None:
        raise NotFound(f"no adapter version '{version}'", param="version")
    return row


def _in_state(session: Session, state: str) -> AdapterVersionRow | None:
    return session.scalars(select(AdapterVersionRow).where(AdapterVersionRow.state == state)).first()


def _refuse_second(session: Session, state: str, version: str) -> None:
    other = _in_state(session, state)
    if other is not None and other.version != version:
        raise InvalidRequest(
            f"adapter {other.version} is already in {state}; end it first", code="invalid_transition"
        )


def _clear_backup(session: Session) -> None:
    for row in session.scalars(select(AdapterVersionRow).where(AdapterVersionRow.is_backup.is_(True))):
        row.is_backup = False


def _move(session: Session, row: AdapterVersionRow, to_state: str, actor: str, reason: str) -> None:
    check_transition(row.version, row.state, to_state)
    _audit(session, row.version, row.state, to_state, actor, reason)
    row.state = to_state
    row.updated_at = utcnow()
    # Flushed now so that a later query in the same transaction sees the new state.
    session.flush()


def _audit(
    session: Session, version: str, from_state: str | None, to_state: str, actor: str, reason: str
) -> None:
    if not actor.strip() or not reason.strip():
        raise InvalidRequest("every adapter state change needs who made it and why", param="actor")
    session.add(
        AdapterTransitionRow(
            version=version, from_state=from_state, to_state=to_state, actor=actor, reason=reason, at=utcnow()
        )
    )
