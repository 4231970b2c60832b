"""The Upwork API client and the profile sync routes, against the sandbox over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from upwork_assistant.upwork.graphql import RetryPolicy, is_idempotent

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import count, rows
from .upwork_helpers import (
    JSON,
    audit_events,
    connection_row,
    sign_in,
    sqlite_time,
    sync,
    wait_until,
)


def test_profile_and_connection_endpoints(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["noemail"])
    profile = browser.get("/api/upwork/profile", headers=JSON).json()
    assert profile["upwork_id"] == SANDBOX_USERS["noemail"] and profile["email"] is None
    assert profile["nid"] == "noemailuser" and profile["synced_at"]
    assert profile["last_sync"]["trigger"] == "signin" and profile["last_sync"]["succeeded"]
    conn = browser.get("/api/upwork/connection", headers=JSON).json()
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
        assert running.api().get(path).status_code == 401


def test_sync_applies_changes_and_audits_them(running: RunningApp) -> None:
    running.faults(scopes=["all"])
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    first = browser.get("/api/upwork/profile", headers=JSON).json()["synced_at"]
    running.faults(user_patch={"name": "Alex M. Morgan", "email": "alex@changed.example.com"})
    r = sync(browser)
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


def test_sync_needs_csrf_with_cookies(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    r = browser.post("/api/upwork/profile/sync", headers=JSON)
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"


def test_sync_rate_limited_per_user(app_factory: AppFactory) -> None:
    app = app_factory(profile_sync_rate_limit="2/minute")
    alex, _ = sign_in(app, SANDBOX_USERS["alex"])
    assert [sync(alex).status_code for _ in range(2)] == [200, 200]
    third = sync(alex)
    assert third.status_code == 429 and third.json()["error"] == "rate_limited"
    assert 1 <= int(third.headers["retry-after"]) <= 60
    olena, _ = sign_in(app, SANDBOX_USERS["olena"])  # another user has their own budget
    assert sync(olena).status_code == 200


@pytest.mark.parametrize(
    ("faults", "code", "status", "requests"),
    [
        ({"graphql_status": 500}, "upwork_api_error", 502, 3),
        ({"graphql_delay": 1.0}, "upwork_unavailable", 503, 3),
        ({"graphql_errors": True}, "upwork_api_error", 502, 1),
        ({"graphql_status": 429, "retry_after": 30}, "upwork_rate_limited", 503, 1),
    ],
)
def test_upwork_faults_on_sync(
    app_factory: AppFactory, faults: dict[str, Any], code: str, status: int, requests: int
) -> None:
    app = app_factory(upwork_http_timeout=0.3, upwork_retry_backoff=0.05)
    browser, user_id = sign_in(app, SANDBOX_USERS["alex"])
    before_conn = connection_row(app.db_path, user_id)
    before = app.sandbox_state.stats["graphql_requests"]
    app.faults(**faults)
    r = sync(browser)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]
    if code == "upwork_rate_limited":
        assert r.headers["retry-after"] == "30"
    assert app.sandbox_state.stats["graphql_requests"] - before == requests  # bounded
    after_conn = connection_row(app.db_path, user_id)
    assert after_conn["access_token_ct"] == before_conn["access_token_ct"]
    assert after_conn["refresh_token_ct"] == before_conn["refresh_token_ct"]
    failed = rows(app.db_path, "SELECT succeeded, error FROM profile_syncs WHERE trigger='manual'")
    assert failed == [(0, code)]


def test_429_retry_after_sets_the_block_and_is_never_retried_inline(
    app_factory: AppFactory,
) -> None:
    """A 429 is not retried while the user waits: every call is held back for as long as
    Upwork asked (Retry-After when it sends one), then goes out again."""
    app = app_factory(upwork_retry_attempts=3, profile_sync_rate_limit="100/minute")
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    app.faults(graphql_status=429, retry_after=1)
    before = app.sandbox_state.stats["graphql_requests"]
    r = sync(browser)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert sync(browser).status_code == 503  # held back: never reached the sandbox
    assert app.sandbox_state.stats["graphql_requests"] - before == 1
    app.faults(graphql_status=None)
    time.sleep(1.1)
    assert sync(browser).status_code == 200


def test_transient_500_is_retried_to_success(app_factory: AppFactory) -> None:
    app = app_factory(upwork_retry_backoff=0.05)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    app.faults(graphql_status=500)

    import threading

    clear = threading.Timer(0.02, lambda: app.faults(graphql_status=None))
    app.faults(graphql_delay=0.05)
    clear.start()
    r = sync(browser)
    clear.join()
    assert r.status_code == 200, r.text


def test_our_budget_for_upwork_is_kept(app_factory: AppFactory) -> None:
    """One call a minute: the sign-in's code exchange goes out, its profile query is held
    back (it may wait 0.2 s, the next slot is a minute away) and never reaches Upwork."""
    app = app_factory(upwork_rate_limit="1/minute", upwork_rate_limit_max_wait=0.2)
    browser = app.browser()
    r = browser.sign_in(SANDBOX_USERS["alex"])
    assert r.headers["location"] == "/?error=upwork_rate_limited"
    stats = app.sandbox_state.stats
    assert stats["token_authorization_code"] == 1 and stats["graphql_requests"] == 0


def test_stale_profile_synced_after_dashboard_view(running: RunningApp) -> None:
    browser, user_id = sign_in(running, SANDBOX_USERS["olena"])
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    rows(running.db_path, "UPDATE users SET identity_fetched_at=? WHERE id=?", old, user_id)
    assert browser.get("/").status_code == 200
    wait_until(
        lambda: (
            rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='stale'")[0][0]
            == 1
        )
    )
    # Viewed again right away: fresh now, no second sync.
    browser.get("/")
    time.sleep(0.3)
    assert (
        rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='stale'")[0][0] == 1
    )


def test_worker_inside_serve_by_default(app_factory: AppFactory) -> None:
    """WORKER_IN_SERVE unset: a single-process serve runs the upkeep itself. It purges
    content past 24 hours and fetches nothing on a timer."""
    app = app_factory(worker_in_serve=None, worker_interval_seconds=0.2)
    _, user_id = sign_in(app, SANDBOX_USERS["alex"])
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    rows(app.db_path, "UPDATE users SET identity_fetched_at=? WHERE id=?", old, user_id)
    wait_until(lambda: rows(app.db_path, "SELECT name FROM users")[0][0] is None)
    assert rows(app.db_path, "SELECT trigger FROM profile_syncs ORDER BY id") == [("signin",)]
    wait_until(lambda: count(app.db_path, "audit_checkpoints") >= 1)  # log upkeep too


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
