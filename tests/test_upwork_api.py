"""The Upwork API client and the profile sync routes, against the sandbox over HTTP
(in-process: the app through httpx.ASGITransport; its calls to the mounted sandbox too).
One fault case stays on the real tier: a timeout needs a real socket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from upwork_assistant.upwork.graphql import RetryPolicy, is_idempotent

from .fixtures import SANDBOX_USERS, AppFactory, InProcessApp, InProcessFactory, RunningApp
from .helpers import count, rows
from .upwork_helpers import (
    JSON,
    audit_events,
    connection_row,
    sign_in,
    sign_in_inprocess,
    sqlite_time,
    sync,
    sync_inprocess,
    wait_until_inprocess,
)


@pytest.mark.inprocess
async def test_profile_and_connection_endpoints(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["noemail"])
    profile = (await browser.get("/api/upwork/profile", headers=JSON)).json()
    assert profile["upwork_id"] == SANDBOX_USERS["noemail"] and profile["email"] is None
    assert profile["nid"] == "noemailuser" and profile["synced_at"]
    assert profile["last_sync"]["trigger"] == "signin" and profile["last_sync"]["succeeded"]
    conn = (await browser.get("/api/upwork/connection", headers=JSON)).json()
    assert set(conn) == {
        "status",
        "access_expires_at",
        "refresh_expires_at",
        "last_refresh_at",
        "organization_id",
        "grants",
        "content",
    }
    assert conn["content"]["state"] == "fresh" and conn["content"]["expires_at"]
    for path in ("/api/upwork/profile", "/api/upwork/connection"):
        assert (await running.api().get(path)).status_code == 401


@pytest.mark.inprocess
async def test_sync_applies_changes_and_audits_them(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(scopes=["all"])
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    first = (await browser.get("/api/upwork/profile", headers=JSON)).json()["synced_at"]
    await running.faults(user_patch={"name": "Alex M. Morgan", "email": "alex@changed.example.com"})
    r = await sync_inprocess(browser)
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "Alex M. Morgan" and body["email"] == "alex@changed.example.com"
    assert body["synced_at"] > first
    assert body["last_sync"]["trigger"] == "manual"
    assert set(body["last_sync"]["changed"]) == {"name", "email"}
    event = audit_events(running.db_path, "profile.updated")[-1]
    assert set(event["fields"]) == {"name", "email"} and event["source"] == "manual"
    # The tenant header went out with the stored organization: the sandbox checks it.
    assert connection_row(running.db_path, user_id)["organization_id"] == "1717171717171717101"


@pytest.mark.inprocess
async def test_sync_needs_csrf_with_cookies(inprocess: InProcessApp) -> None:
    browser, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    r = await browser.post("/api/upwork/profile/sync", headers=JSON)
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"


@pytest.mark.inprocess
async def test_sync_rate_limited_per_user(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(profile_sync_rate_limit="2/minute")
    alex, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    assert [(await sync_inprocess(alex)).status_code for _ in range(2)] == [200, 200]
    third = await sync_inprocess(alex)
    assert third.status_code == 429 and third.json()["error"] == "rate_limited"
    assert 1 <= int(third.headers["retry-after"]) <= 60
    # another user has their own budget
    olena, _ = await sign_in_inprocess(app, SANDBOX_USERS["olena"])
    assert (await sync_inprocess(olena)).status_code == 200


FAULTS_ON_SYNC = [
    ({"graphql_status": 500}, "upwork_api_error", 502, 3),
    ({"graphql_delay": 2.0}, "upwork_unavailable", 503, 3),
    ({"graphql_errors": True}, "upwork_api_error", 502, 1),
    ({"graphql_status": 429, "retry_after": 30}, "upwork_rate_limited", 503, 1),
]


def _times_out(faults: dict[str, Any]) -> bool:
    return "graphql_delay" in faults


def assert_failed_sync(
    app: InProcessApp | RunningApp,
    r: httpx.Response,
    user_id: str,
    before_conn: dict[str, Any],
    graphql_before: int,
    *,
    code: str,
    status: int,
    requests: int,
) -> None:
    """A sync that Upwork failed: the clear error, a bounded number of calls, the stored
    tokens untouched, and the failure recorded."""
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]
    if code == "upwork_rate_limited":
        assert r.headers["retry-after"] == "30"
    assert app.sandbox_state.stats["graphql_requests"] - graphql_before == requests  # bounded
    after_conn = connection_row(app.db_path, user_id)
    assert after_conn["access_token_ct"] == before_conn["access_token_ct"]
    assert after_conn["refresh_token_ct"] == before_conn["refresh_token_ct"]
    failed = rows(app.db_path, "SELECT succeeded, error FROM profile_syncs WHERE trigger='manual'")
    assert failed == [(0, code)]


@pytest.mark.inprocess
@pytest.mark.parametrize(
    ("faults", "code", "status", "requests"),
    [case for case in FAULTS_ON_SYNC if not _times_out(case[0])],
)
async def test_upwork_faults_on_sync(
    inprocess_factory: InProcessFactory,
    faults: dict[str, Any],
    code: str,
    status: int,
    requests: int,
) -> None:
    app = await inprocess_factory(upwork_http_timeout=0.3, upwork_retry_backoff=0.05)
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    before_conn = connection_row(app.db_path, user_id)
    before = app.sandbox_state.stats["graphql_requests"]
    await app.faults(**faults)
    r = await sync_inprocess(browser)
    assert_failed_sync(
        app, r, user_id, before_conn, before, code=code, status=status, requests=requests
    )


@pytest.mark.parametrize(
    ("faults", "code", "status", "requests"),
    [case for case in FAULTS_ON_SYNC if _times_out(case[0])],
)
def test_upwork_timeout_on_sync(
    app_factory: AppFactory, faults: dict[str, Any], code: str, status: int, requests: int
) -> None:
    """The real tier: httpx's timeout is the socket's (httpx.ASGITransport has none). A
    second: the sign-in before the fault must not time out on a busy host."""
    app = app_factory(upwork_http_timeout=1.0, upwork_retry_backoff=0.05)
    browser, user_id = sign_in(app, SANDBOX_USERS["alex"])
    before_conn = connection_row(app.db_path, user_id)
    before = app.sandbox_state.stats["graphql_requests"]
    app.faults(**faults)
    r = sync(browser)
    assert_failed_sync(
        app, r, user_id, before_conn, before, code=code, status=status, requests=requests
    )


@pytest.mark.inprocess
async def test_429_retry_after_sets_the_block_and_is_never_retried_inline(
    inprocess_factory: InProcessFactory,
) -> None:
    """A 429 is not retried while the user waits: every call is held back for as long as
    Upwork asked (Retry-After when it sends one), then goes out again."""
    app = await inprocess_factory(upwork_retry_attempts=3, profile_sync_rate_limit="100/minute")
    browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    # Three seconds: the second sync below must fall inside the block even on a busy host.
    await app.faults(graphql_status=429, retry_after=3)
    before = app.sandbox_state.stats["graphql_requests"]
    r = await sync_inprocess(browser)
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    # held back: never reached the sandbox
    assert (await sync_inprocess(browser)).status_code == 503
    assert app.sandbox_state.stats["graphql_requests"] - before == 1
    await app.faults(graphql_status=None)
    await asyncio.sleep(3.1)
    assert (await sync_inprocess(browser)).status_code == 200


@pytest.mark.inprocess
async def test_transient_500_is_retried_to_success(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(upwork_retry_backoff=0.05)
    browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    await app.faults(graphql_status=500)

    async def clear_later() -> None:
        await asyncio.sleep(0.02)
        await app.faults(graphql_status=None)

    await app.faults(graphql_delay=0.05)
    clear = asyncio.create_task(clear_later())
    r = await sync_inprocess(browser)
    await clear
    assert r.status_code == 200, r.text


@pytest.mark.inprocess
async def test_our_budget_for_upwork_is_kept(inprocess_factory: InProcessFactory) -> None:
    """One call a minute: the sign-in's code exchange goes out, its profile query is held
    back (it may wait 0.2 s, the next slot is a minute away) and never reaches Upwork."""
    app = await inprocess_factory(upwork_rate_limit="1/minute", upwork_rate_limit_max_wait=0.2)
    browser = app.browser()
    r = await browser.sign_in(SANDBOX_USERS["alex"])
    assert r.headers["location"] == "/?error=upwork_rate_limited"
    stats = app.sandbox_state.stats
    assert stats["token_authorization_code"] == 1 and stats["graphql_requests"] == 0


@pytest.mark.inprocess
async def test_stale_profile_synced_after_dashboard_view(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    rows(running.db_path, "UPDATE users SET identity_fetched_at=? WHERE id=?", old, user_id)
    assert (await browser.get("/")).status_code == 200
    await wait_until_inprocess(
        lambda: (
            rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='stale'")[0][0]
            == 1
        )
    )
    # Viewed again right away: fresh now, no second sync.
    await browser.get("/")
    await asyncio.sleep(0.3)
    assert (
        rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='stale'")[0][0] == 1
    )


@pytest.mark.inprocess
async def test_worker_inside_serve_by_default(inprocess_factory: InProcessFactory) -> None:
    """WORKER_IN_SERVE unset: a single-process serve runs the upkeep itself. It purges
    content past 24 hours and fetches nothing on a timer."""
    app = await inprocess_factory(worker_in_serve=None, worker_interval_seconds=0.2)
    _, user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    # In a thread: the worker runs on this event loop, and on SQLite a write here that
    # waited for the worker's transaction would stop the loop the worker commits on.
    await asyncio.to_thread(
        rows, app.db_path, "UPDATE users SET identity_fetched_at=? WHERE id=?", old, user_id
    )
    await wait_until_inprocess(lambda: rows(app.db_path, "SELECT name FROM users")[0][0] is None)
    assert rows(app.db_path, "SELECT trigger FROM profile_syncs ORDER BY id") == [("signin",)]
    # log upkeep too
    await wait_until_inprocess(lambda: count(app.db_path, "audit_checkpoints") >= 1)


def test_idempotency_detection() -> None:
    assert is_idempotent("{ user { id } }")
    assert is_idempotent("query A { user { id } } query B { organization { id } }")
    assert not is_idempotent("mutation { doThing { id } }")
    assert not is_idempotent("query { a } mutation { b }")
    assert not is_idempotent("this is not graphql")


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff=1.0)
    delays = [policy.delay(5) for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in delays) and len(set(delays)) > 100
    assert all(policy.delay(1) <= 1.0 for _ in range(100))
