"""Async engine and sessions. SQLite gets foreign keys, WAL and a busy timeout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, create_engine, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.pool import ConnectionPoolEntry

IMMEDIATE = "upwork_assistant_write"
#: Tables whose rows the session cache remembers (auth/session_cache.py).
AUTH_STATE_TABLES = frozenset({"users", "sessions"})
_AUTH_STATE_CHANGED = "upwork_assistant_auth_state_changed"


class _WriteSession(Session):
    """Our sessions: they note when a transaction changed a user or a session row."""


@event.listens_for(_WriteSession, "after_flush")
def _flushed(session: Session, _flush: UOWTransaction) -> None:
    for row in (*session.dirty, *session.deleted):
        if getattr(row, "__tablename__", None) in AUTH_STATE_TABLES:
            session.info[_AUTH_STATE_CHANGED] = True
            return


@event.listens_for(_WriteSession, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    mapper = state.bind_mapper
    table = getattr(mapper.local_table, "name", None) if mapper is not None else None
    if (state.is_update or state.is_delete) and table in AUTH_STATE_TABLES:
        state.session.info[_AUTH_STATE_CHANGED] = True


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event below emit BEGIN itself (the pysqlite recipe).
    dbapi_conn.isolation_level = None
    # SQLite's lower() knows only ASCII; PostgreSQL's knows Unicode: make them agree.
    dbapi_conn.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted rows (a deleted account's name, email, tokens) are overwritten with zeros
    # rather than left readable in free pages of the file.
    cursor.execute("PRAGMA secure_delete=ON")
    # Reads through memory-mapped I/O (shared by all connections through the OS page cache)
    # rather than a read() call a page: lookups stay as fast with 100,000 users as with 1,000.
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.close()


def _short_busy_timeout(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Database.read_one() runs on the event loop: never let it wait long for a lock.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=1000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front: a deferred one that read first
    # could fail at its first write with SQLITE_BUSY instead of waiting its turn.
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return  # Database.read(): one statement, no transaction around it
    immediate = options.get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            # A bad path is reported when used: /readyz answers 503, requests a clear 503.
            with contextlib.suppress(OSError):
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        # pre-ping: after a database restart, stale pooled connections are replaced.
        kwargs.update(
            pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=10
        )
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


class Database:
    def __init__(
        self,
        url: str,
        session_info: dict[str, Any] | None = None,
        pool_size: int = 10,
        max_overflow: int = 10,
    ) -> None:
        self.engine = make_engine(url, pool_size, max_overflow)
        # session_info: e.g. the audit chain key, available to code holding a session.
        self.sessionmaker = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            info=session_info or {},
            sync_session_class=_WriteSession,
        )
        #: Called after a write transaction that changed a user or session row commits:
        #: this process's session cache forgets at once, before the answer goes out (other
        #: processes learn through their change watch).
        self.after_auth_change: list[Callable[[], None]] = []
        self._sync_reader: Engine | None = None
        if self.engine.dialect.name == "sqlite":
            self._sync_reader = create_engine(
                self.engine.url.set(drivername="sqlite"),
                connect_args={"check_same_thread": False},
                pool_size=2,
                max_overflow=4,
            ).execution_options(isolation_level="AUTOCOMMIT")
            event.listen(self._sync_reader, "connect", _sqlite_pragmas)
            event.listen(self._sync_reader, "connect", _short_busy_timeout)
            event.listen(self._sync_reader, "begin", _sqlite_begin)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reading (transactions begin on first use)."""
        async with self.sessionmaker() as session:
            yield session

    async def read_one(self, statement: Select[Any]) -> Row[Any] | None:
        """One row of one read statement, outside a transaction (no BEGIN, no ROLLBACK):
        the session check on every authenticated request's path.

        On SQLite the read runs right here on the event loop's thread through the plain
        sqlite3 driver: a primary-key read in WAL mode takes microseconds and never waits
        for writers, while aiosqlite's hand-off to its thread (and back) costs far more.
        Elsewhere it is one statement on an autocommit connection."""
        if self._sync_reader is not None:
            with (
                self._sync_reader.connect() as conn,
                Session(bind=conn, expire_on_commit=False) as session,
            ):
                return session.execute(statement).one_or_none()
        async with self.engine.connect() as aconn:
            await aconn.execution_options(isolation_level="AUTOCOMMIT")
            async with AsyncSession(bind=aconn, expire_on_commit=False) as asession:
                return (await asession.execute(statement)).one_or_none()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back on error."""
        async with self.sessionmaker() as session:
            async with session.begin():
                # Our own option, read by the "begin" listener above.
                await session.connection(execution_options={IMMEDIATE: True})
                yield session
            if session.info.pop(_AUTH_STATE_CHANGED, False):
                for hook in self.after_auth_change:
                    hook()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._sync_reader is not None:
            self._sync_reader.dispose()
