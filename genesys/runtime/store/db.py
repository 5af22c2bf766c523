"""The database under the store: one SQLAlchemy engine, SQLite (WAL) by default, PostgreSQL by URL.

Each part of the store (interactions, feedback, IDE events, annotations, datasets) declares its
tables on ``Base`` in a module of its own and reads and writes through ``Database.session()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL is durable across a process crash
    # (kill -9); only a power loss can drop the last commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgres_text_without_nul(dbapi_connection: Any, _record: Any) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): psycopg sends each one as U+FFFD, so that a
    request with a stray NUL byte is stored (marked) instead of failing."""
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is None:  # not psycopg 3 (e.g. psycopg2): left as the driver does it
        return
    from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

    class _TextDumper(StrDumperUnknown):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\ufffd"))

    class _BinaryDumper(StrBinaryDumper):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\ufffd"))

    adapters.register_dumper(str, _TextDumper)
    adapters.register_dumper(str, _BinaryDumper)


def make_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_text_without_nul)
    return engine


def lock_in(session: Session, name: str) -> None:
    """Serialize, across processes, the transactions that take the lock ``name``, until ``session``'s
    transaction ends: a check-then-write (one active rollout, the state a change expects) then sees
    the writes of the transaction before it.

    On PostgreSQL a transaction-scoped advisory lock; on SQLite nothing: a SQLite store serves one
    server process (replicas need PostgreSQL), whose repositories guard their own check-then-writes.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


class Database:
    """The engine and its sessions; thread-safe (each call opens its own session)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        """Create the missing tables. Replicas starting at once on one PostgreSQL database take turns
        (two concurrent ``CREATE TABLE`` of the same table would fail one of them)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('genesys.schema'))"))
            Base.metadata.create_all(conn)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction, committed when the block ends without an error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.engine.dispose()
