"""Change watches: how a process learns, without asking the database on every request,
that rows it remembers may have changed in another connection or another process.

- SQLite (`SqliteWatch`): ``PRAGMA data_version`` on a connection of its own that never
  writes. Its value changes whenever any other connection, in this process or another,
  has committed to the database file; reading it costs a few microseconds (SQLite looks
  at the shared WAL index), so it is read before every lookup: no window at all.
- PostgreSQL (`PostgresWatch`): ``LISTEN`` on a connection of its own. Triggers on the
  watched tables (migration 0010) call ``pg_notify`` with the affected user's id, and
  PostgreSQL delivers notifications when the writing transaction commits. The window is
  the delivery time after that commit (measured in docs/security.md), narrowed by
  `PostgresWatch.quiet`: a notice that has reached this process but is not read yet
  already counts. While the connection is down, the watch reports that it is not
  watching, so nothing remembered is trusted (the caller reads the database, and a
  database outage answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import select
import sqlite3
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs shipped
import structlog

log = structlog.get_logger("upwork_assistant")

#: The channel the triggers of migration 0010 notify, with a user id as the payload.
AUTH_STATE_CHANNEL = "ua_auth_state"
#: Payloads of the watch's own test notices (a user id never starts so).
PROBE_PREFIX = "probe:"
#: The triggers of migration 0010 that send the notices: without them (a database not
#: upgraded yet) nothing would tell the cache of a change, so the watch does not vouch.
TRIGGERS = ("ua_users_auth_state", "ua_sessions_auth_state")


class WatchUnsound(Exception):
    """The listening connection works, but not every change would be reported."""


class SqliteWatch:
    """``poll()`` before each lookup: calls ``on_change`` when anything was committed to
    the file since the previous poll; returns False when it cannot tell (treat nothing
    remembered as current then)."""

    def __init__(self, path: str, on_change: Callable[[], None]) -> None:
        self._path = path
        self._on_change = on_change
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def poll(self) -> bool:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            self.close()
            self._version = None
            self._on_change()
            return False
        if version != self._version:
            self._version = version
            self._on_change()
        return True

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


class PostgresWatch:
    """Listens on `AUTH_STATE_CHANNEL`: ``on_user(user_id)`` for each notification, and
    ``on_state(watching)`` when listening starts (after LISTEN took effect) or stops
    (connection lost, keep-alive unanswered, shut down). Reconnects by itself."""

    def __init__(
        self,
        dsn: str,
        on_user: Callable[[str], None],
        on_state: Callable[[bool], None],
        *,
        keepalive: float = 2.0,
        probe_timeout: float | None = None,
        channel: str = AUTH_STATE_CHANNEL,
    ) -> None:
        """``keepalive``: seconds between two probes; ``probe_timeout``: how long a probe's
        notice may take to come back (by default as long: a deaf listener stops vouching
        within two keep-alives)."""
        self._dsn = dsn
        self._on_user = on_user
        self._on_state = on_state
        self._keepalive = keepalive
        self._probe_timeout = keepalive if probe_timeout is None else probe_timeout
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self.watching = False
        self._listening = asyncio.Event()
        #: Readiness of the listening connection's socket, polled by `quiet`.
        self._socket: select.poll | None = None
        self._probe_token = ""
        self._probe_back = asyncio.Event()
        self._warned = False
        #: The listening connection's server process id (tests end it to simulate a loss).
        self.backend_pid: int | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="postgres-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set(False)

    async def wait_watching(self) -> None:
        """For start-up and tests: until LISTEN has taken effect."""
        await self._listening.wait()

    def quiet(self) -> bool:
        """Nothing has arrived on the listening connection that is not read yet (a notice
        on its way to `on_user`, or the connection closing): what is remembered is as
        current as the notices already handled. Polling the socket costs a system call,
        not a round trip."""
        poller = self._socket
        return self.watching and poller is not None and not poller.poll(0)

    def _set(self, watching: bool) -> None:
        if watching != self.watching:
            self.watching = watching
            self._on_state(watching)
            (self._listening.set if watching else self._listening.clear)()

    def _lost(self, lost: asyncio.Event, _conn: Any) -> None:
        self._set(False)  # at once: before any request is served again
        lost.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PROBE_PREFIX):
            if payload == self._probe_token:
                self._probe_back.set()
            return  # another process's probe: nothing changed
        self._on_user(payload)

    async def _probe(self, conn: Any) -> None:
        """Check that the triggers are there, then send a notice of our own and wait for
        it to come back on the listening connection: proof that notices reach us (they do
        not through a pooler in transaction mode, where LISTEN seems to work but hears
        nothing)."""
        self._probe_token = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        self._probe_back = asyncio.Event()
        async with asyncio.timeout(self._probe_timeout):
            triggers = await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgname = ANY($1::text[])"
                " AND tgenabled <> 'D'",
                list(TRIGGERS),
            )
            if triggers != len(TRIGGERS):
                raise WatchUnsound("the change triggers are missing: run `db upgrade`")
            await conn.execute("SELECT pg_notify($1, $2)", self._channel, self._probe_token)
            await self._probe_back.wait()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            conn: Any = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                conn.add_termination_listener(functools.partial(self._lost, lost))
                await conn.add_listener(self._channel, self._notified)
                await self._probe(conn)
                self.backend_pid = conn.get_server_pid()
                self._socket = _readable(conn)
                self._set(True)
                delay = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._keepalive)
                    if not lost.is_set():
                        await self._probe(conn)  # the keep-alive: still hearing notices
            except asyncio.CancelledError:
                raise
            except WatchUnsound as exc:
                if self.watching or not self._warned:
                    log.warning("postgres_watch_unsound", reason=str(exc))
                    self._warned = True
            except Exception as exc:  # down: not watching; try again shortly
                if self.watching:
                    log.warning("postgres_watch_lost", error_type=type(exc).__name__)
            finally:
                self._socket = None
                self._set(False)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _readable(conn: Any) -> select.poll:
    """A poll object for input on asyncpg connection ``conn``'s socket."""
    sock = conn._transport.get_extra_info("socket")  # asyncpg has no public accessor
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return poller
