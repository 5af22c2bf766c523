"""The interaction store: SQLAlchemy, SQLite in WAL mode by default, PostgreSQL by URL.

An interaction is committed before the last chunk of its reply leaves the server, so a reply the
client saw complete is never lost, even if the process is killed right after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

InteractionType = Literal["chat", "code", "debug", "explanation"]
Endpoint = Literal["chat", "completion", "fim"]
Status = Literal["completed", "error", "cancelled"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_interaction_id(endpoint: Endpoint) -> str:
    prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class InteractionRow(Base):
    __tablename__ = "interactions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str | None] = mapped_column(String(256), index=True)
    endpoint: Mapped[str] = mapped_column(String(16))
    request_messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    ab_arm: Mapped[str | None] = mapped_column(String(32))
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    interaction_type: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    completed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Interaction(BaseModel):
    """One exchange: what the IDE sent, what Genesys answered, and how."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    request_id: str | None = None
    conversation_id: str
    user: str | None = None
    endpoint: Endpoint = "chat"
    request_messages: list[dict[str, Any]]
    context: dict[str, Any] = Field(default_factory=dict)
    answer: str
    tool_calls: list[dict[str, Any]] | None = None
    model_version: str
    ab_arm: str | None = None
    latency_ms: float
    ttft_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    status: Status = "completed"
    error: str | None = None
    interaction_type: InteractionType = "chat"
    category: str | None = None
    created_at: datetime
    completed_at: datetime = Field(default_factory=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL is durable across a process crash
    # (kill -9); only a power loss can drop the last commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class InteractionStore:
    """Reads and writes interactions. Thread-safe: each call uses its own session."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_db_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def record(self, interaction: Interaction) -> None:
        """Commit one interaction (blocking); it is durable when this returns."""
        with self.session() as session:
            session.add(InteractionRow(**interaction.model_dump()))

    def get(self, interaction_id: str) -> Interaction | None:
        with self._sessions() as session:
            row = session.get(InteractionRow, interaction_id)
            return Interaction.model_validate(row) if row else None

    def list(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        since: datetime | None = None,
        conversation_id: str | None = None,
    ) -> list[Interaction]:
        query = select(InteractionRow).order_by(InteractionRow.created_at, InteractionRow.id)
        if since is not None:
            query = query.where(InteractionRow.created_at >= since)
        if conversation_id is not None:
            query = query.where(InteractionRow.conversation_id == conversation_id)
        with self._sessions() as session:
            rows = session.scalars(query.offset(offset).limit(limit)).all()
            return [Interaction.model_validate(r) for r in rows]

    def count(self) -> int:
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(InteractionRow)) or 0)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.engine.dispose()
