"""The session check's per-process cache (auth/session_cache.py, db/watch.py): requests are
answered from memory only while a change watch vouches for it, and every change, however
it is made (this process, another connection, plain SQL), is seen by the next request:
at once on SQLite and for our own writes, within the notification's delivery on
PostgreSQL. Losing the watch turns the cache off (reads go to the database, which fails
closed). Across processes: tests/test_multi_instance.py and test_sessions.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect

from upwork_assistant.auth.session_cache import SessionCache
from upwork_assistant.db.models import SessionEnd, User, UserSession
from upwork_assistant.db.types import utcnow
from upwork_assistant.db.watch import PostgresWatch

from .fixtures import InProcessApp
from .helpers import AsyncBrowser, TestDb

pytestmark = pytest.mark.inprocess

JSON = {"Accept": "application/json"}


async def signed_in(app: InProcessApp) -> tuple[AsyncBrowser, Any]:
    """A signed-in browser of ``app`` whose session is in the cache; and the services."""
    svc = app.app.state.services
    if isinstance(svc.watch, PostgresWatch):
        async with asyncio.timeout(10):
            await svc.watch.wait_watching()
    browser = app.browser()
    await browser.sign_in()
    for _ in range(2):
        assert (await browser.client.get("/api/auth/me", headers=JSON)).status_code == 200
    assert len(svc.sessions.cache) == 1
    return browser, svc


def behind_the_apps_back(app: InProcessApp, sql: str, *args: Any) -> None:
    """Plain SQL on a connection of its own, with none of the test helpers' shortcuts: the
    app learns of it through its change watch only."""
    TestDb(app.db_path.url, app.db_path.path).execute(sql, args)


async def eventually(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds * 1000)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"not within {seconds} s")


async def refused_soon(app: InProcessApp, browser: AsyncBrowser, svc: Any) -> float:
    """Seconds until the cache forgot the session (0 on SQLite, where the next lookup
    reads data_version), then the request is refused: never more than a second."""
    started = time.monotonic()
    if app.db_path.is_postgres:
        await eventually(lambda: len(svc.sessions.cache) == 0, seconds=1)
    r = await browser.client.get("/api/auth/me", headers=JSON)
    assert r.status_code == 401, r.text
    return time.monotonic() - started


async def test_repeated_requests_are_answered_from_the_cache(inprocess: InProcessApp) -> None:
    browser, svc = await signed_in(inprocess)
    cache = svc.sessions.cache
    hits = cache.hits
    for _ in range(5):
        assert (await browser.client.get("/api/auth/me", headers=JSON)).status_code == 200
    assert cache.hits == hits + 5


async def test_a_session_revoked_by_plain_sql_is_refused(inprocess: InProcessApp) -> None:
    """Written around the app (as another process or an operator would): the trigger on
    PostgreSQL, data_version on SQLite."""
    browser, svc = await signed_in(inprocess)
    behind_the_apps_back(
        inprocess,
        "UPDATE sessions SET revoked_at = ?, revoked_reason = 'by hand'",
        utcnow().strftime("%Y-%m-%d %H:%M:%S.%f"),
    )
    await refused_soon(inprocess, browser, svc)


async def test_a_user_blocked_by_plain_sql_is_refused(inprocess: InProcessApp) -> None:
    browser, svc = await signed_in(inprocess)
    behind_the_apps_back(
        inprocess, "UPDATE users SET blocked_at = ?", utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    )
    await refused_soon(inprocess, browser, svc)


async def test_a_deleted_user_is_refused(inprocess: InProcessApp) -> None:
    browser, svc = await signed_in(inprocess)
    behind_the_apps_back(inprocess, "DELETE FROM users")
    await refused_soon(inprocess, browser, svc)


async def test_our_own_commit_forgets_at_once(inprocess: InProcessApp) -> None:
    """A write transaction of this process that changes a session (or user) row clears
    the cache when it commits, before any answer goes out: no lookup, no notification."""
    _browser, svc = await signed_in(inprocess)
    cache = svc.sessions.cache
    # A write that touches neither table leaves it alone. (Checked first: a second sign-in
    # would update the user row, and that commit's notice could arrive at any moment.)
    async with svc.db.write() as db:
        await db.execute(UserSession.__table__.select().limit(1))
    assert len(cache) == 1
    (entry,) = cache._entries.values()
    session: UserSession = entry[0]
    async with svc.db.write() as db:
        assert await svc.sessions.revoke(db, session.id, session.user_id, SessionEnd.LOGOUT)
        assert len(cache) == 1  # not yet committed: still remembered
    assert len(cache) == 0


async def test_handlers_never_change_the_shared_rows(inprocess: InProcessApp) -> None:
    """Cached rows are shared by every request: pages and API answers read them only."""
    browser, svc = await signed_in(inprocess)
    (entry,) = svc.sessions.cache._entries.values()
    session, user = entry[0], entry[1]
    assert isinstance(user, User)
    pages = ("/", "/security", "/account", "/api/security/mfa", "/api/security/sessions")
    for path in (*pages, "/api/upwork/profile", "/api/auth/me"):
        r = await browser.client.get(path)
        assert r.status_code == 200, (path, r.status_code)
    for row in (session, user):
        state = inspect(row)
        assert state.detached and not state.modified, row


async def test_an_expired_session_is_refused_from_the_cache(inprocess: InProcessApp) -> None:
    browser, svc = await signed_in(inprocess)
    (entry,) = svc.sessions.cache._entries.values()
    # The cached row says when the session ends; the lookup checks it every time.
    entry[0].__dict__["expires_at"] = utcnow()
    r = await browser.client.get("/api/auth/me", headers=JSON)
    assert r.status_code == 401


async def test_losing_the_postgres_listener_turns_the_cache_off(inprocess: InProcessApp) -> None:
    if not inprocess.db_path.is_postgres:
        pytest.skip("PostgreSQL's LISTEN connection")
    browser, svc = await signed_in(inprocess)
    watch: PostgresWatch = svc.watch
    inprocess.db_path.execute("SELECT pg_terminate_backend(?)", (watch.backend_pid,))
    await eventually(lambda: not watch.watching, seconds=2)
    cache = svc.sessions.cache
    assert len(cache) == 0 and not cache.watching
    misses = cache.misses
    assert (await browser.client.get("/api/auth/me", headers=JSON)).status_code == 200
    assert cache.misses == misses + 1 and len(cache) == 0  # read, and not remembered
    async with asyncio.timeout(10):
        await watch.wait_watching()  # reconnected by itself
    for _ in range(2):
        assert (await browser.client.get("/api/auth/me", headers=JSON)).status_code == 200
    assert len(cache) == 1


async def test_a_listener_that_hears_nothing_never_vouches(inprocess: InProcessApp) -> None:
    """Through a pooler in transaction mode LISTEN seems to work but hears nothing: the
    watch's own notice must come back before it vouches for the cache, and keep coming."""
    if not inprocess.db_path.is_postgres:
        pytest.skip("PostgreSQL's LISTEN connection")
    dsn = inprocess.db_path.url
    states: list[bool] = []
    deaf = PostgresWatch(dsn, lambda _user: None, states.append, keepalive=0.2)
    deaf._notified = lambda *_args: None  # type: ignore[method-assign]  # hears nothing
    deaf.start()
    await asyncio.sleep(1.0)
    assert not deaf.watching and states == []
    await deaf.stop()
    # Probes every 0.2 s, each given 2 s to come back: a busy host may be slow to answer.
    hearing = PostgresWatch(
        dsn, lambda _user: None, states.append, keepalive=0.2, probe_timeout=2.0
    )
    hearing.start()
    async with asyncio.timeout(5):
        await hearing.wait_watching()
    await asyncio.sleep(0.6)  # a few keep-alive probes come back too
    assert hearing.watching and states == [True]
    await hearing.stop()
    assert states == [True, False]


async def test_without_the_triggers_the_watch_never_vouches(inprocess: InProcessApp) -> None:
    """A database not upgraded to migration 0010 sends no notices: no cache then."""
    if not inprocess.db_path.is_postgres:
        pytest.skip("PostgreSQL's triggers")
    behind_the_apps_back(inprocess, "ALTER TABLE sessions DISABLE TRIGGER ua_sessions_auth_state")
    states: list[bool] = []
    watch = PostgresWatch(
        inprocess.db_path.url, lambda _user: None, states.append, keepalive=0.2, probe_timeout=2.0
    )
    watch.start()
    await asyncio.sleep(1.0)
    assert not watch.watching and states == []
    behind_the_apps_back(inprocess, "ALTER TABLE sessions ENABLE TRIGGER ua_sessions_auth_state")
    async with asyncio.timeout(5):
        await watch.wait_watching()
    await watch.stop()


# ----- the cache's rules, without a database ------------------------------------------


def rows(user_id: str = "u1", session_id: str = "s1") -> tuple[UserSession, User]:
    return UserSession(id=session_id, user_id=user_id), User(id=user_id, upwork_id=user_id)


def test_nothing_is_remembered_or_served_while_not_watching() -> None:
    cache = SessionCache()
    cache.fill(cache.read_started(), *rows())
    assert len(cache) == 0 and cache.lookup("s1") is None
    cache.set_watching(True)
    cache.fill(cache.read_started(), *rows())
    assert cache.lookup("s1") is not None
    cache.set_watching(False)
    assert len(cache) == 0 and cache.lookup("s1") is None


def test_a_read_that_raced_a_change_is_not_remembered() -> None:
    cache = SessionCache()
    cache.set_watching(True)
    started = cache.read_started()  # the read begins ...
    cache.changed_user("u1")  # ... a change is reported while it runs ...
    cache.fill(started, *rows())  # ... so what it read may predate the change
    assert len(cache) == 0
    cache.fill(cache.read_started(), *rows())
    assert len(cache) == 1


def test_a_change_forgets_only_that_users_sessions() -> None:
    cache = SessionCache()
    cache.set_watching(True)
    for user_id, session_id in (("u1", "s1"), ("u1", "s2"), ("u2", "s3")):
        cache.fill(cache.read_started(), *rows(user_id, session_id))
    cache.changed_user("u1")
    assert cache.lookup("s1") is None and cache.lookup("s2") is None
    assert cache.lookup("s3") is not None


def test_entries_age_out_and_the_size_is_bounded() -> None:
    now = [0.0]
    cache = SessionCache(max_age=60, max_entries=2, clock=lambda: now[0])
    cache.set_watching(True)
    cache.fill(cache.read_started(), *rows("u1", "s1"))
    now[0] = 61
    assert cache.lookup("s1") is None
    cache.fill(cache.read_started(), *rows("u2", "s2"))
    cache.fill(cache.read_started(), *rows("u3", "s3"))
    assert len(cache) <= 2


def test_a_failing_poll_means_no_hits() -> None:
    cache = SessionCache()
    cache.set_watching(True)
    cache.fill(cache.read_started(), *rows())
    cache.poll = lambda: False
    assert cache.lookup("s1") is None and cache.read_started() is None
