"""The token vault against the sandbox over HTTP: refresh ahead of expiry and after a 401,
single flight, atomic rotation, re-authorisation."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import count, rows
from .upwork_helpers import (
    JSON,
    audit_events,
    connection_row,
    expire_access,
    sandbox_refresh,
    sign_in,
    sqlite_time,
    stored_tokens,
    sync,
)


def test_sign_in_stores_organization_and_expiry(running: RunningApp) -> None:
    running.faults(scopes=["all"])
    browser, user_id = sign_in(running, SANDBOX_USERS["olena"])
    conn = browser.get("/api/upwork/connection", headers=JSON).json()
    assert conn["status"] == "connected"
    assert conn["organization_id"] == "1717171717171717102"
    assert conn["access_expires_at"] and conn["refresh_expires_at"]
    assert conn["last_refresh_at"] is None
    access, refresh = stored_tokens(running, user_id)
    body = str(conn)
    assert access not in body and (refresh or "") not in body


def test_expired_access_token_refreshes_once_and_rotates(
    running: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    before = connection_row(running.db_path, user_id)
    old_access, old_refresh = stored_tokens(running, user_id)
    expire_access(running.db_path, user_id)

    r = sync(browser)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Alex M." and r.json()["last_sync"]["succeeded"]
    stats = running.sandbox_state.stats
    assert stats["token_refresh"] == 1

    after = connection_row(running.db_path, user_id)
    assert after["access_token_ct"] != before["access_token_ct"]
    assert after["refresh_token_ct"] != before["refresh_token_ct"]
    assert after["last_refresh_at"] is not None and after["refresh_lease_owner"] is None
    new_access, new_refresh = stored_tokens(running, user_id)
    assert new_access != old_access and new_refresh != old_refresh
    # A second call uses the fresh token: no more refreshes.
    assert sync(browser).status_code == 200
    assert running.sandbox_state.stats["token_refresh"] == 1

    # Tokens never reach a log line, old or new.
    for token in (old_access, old_refresh, new_access, new_refresh):
        assert token and token not in caplog.text
    assert "upwork_token_refreshed" in caplog.text

    # Upwork rotated; the old refresh token still works there for 24 hours (Upwork's
    # maintainer, python-upwork-oauth2 issue #11), which is what recovers a crash.
    assert "access_token" in sandbox_refresh(running, old_refresh or "").json()


def test_non_rotating_refresh_keeps_the_refresh_token(running: RunningApp) -> None:
    running.faults(rotate_refresh_token=False)
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    old_access, old_refresh = stored_tokens(running, user_id)
    expire_access(running.db_path, user_id)
    assert sync(browser).status_code == 200
    new_access, new_refresh = stored_tokens(running, user_id)
    assert new_access != old_access and new_refresh == old_refresh
    assert connection_row(running.db_path, user_id)["refresh_expires_at"] is not None


def test_no_expires_in_means_long_lived_until_401(running: RunningApp) -> None:
    running.faults(omit_expires_in=True)
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    assert connection_row(running.db_path, user_id)["access_expires_at"] is None
    access, _ = stored_tokens(running, user_id)
    # The sandbox's access token is now dead; we do not know it.
    running.sandbox_state.access_tokens[access].expires_at = time.time() - 1
    graphql_before = running.sandbox_state.stats["graphql_requests"]
    r = sync(browser)
    assert r.status_code == 200, r.text
    stats = running.sandbox_state.stats
    assert stats["token_refresh"] == 1
    assert stats["graphql_requests"] - graphql_before == 2  # 401, then success


def test_second_401_gives_up(running: RunningApp) -> None:
    """Refused again right after a refresh: the user must reconnect (no endless 502)."""
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    before = running.sandbox_state.stats["graphql_requests"]
    running.faults(graphql_status=401)
    r = sync(browser)
    assert r.status_code == 409 and r.json()["error"] == "upwork_reauth_required"
    stats = running.sandbox_state.stats
    assert stats["token_refresh"] == 1 and stats["graphql_requests"] - before == 2


def test_fifty_concurrent_requests_one_refresh(app_factory: AppFactory) -> None:
    # Our own limits are raised: this test is about the refresh, not about pacing.
    app = app_factory(profile_sync_rate_limit="1000/minute", upwork_rate_limit="1000/second")
    app.faults(ip_rate_limit=0)  # nor about Upwork's per-IP limit
    browser, user_id = sign_in(app, SANDBOX_USERS["olena"])
    expire_access(app.db_path, user_id)
    cookies = dict(browser.client.cookies.items())
    headers = {**JSON, "X-CSRF-Token": cookies["csrf_token"]}

    def call(_: int) -> tuple[int, str]:
        r = httpx.post(
            f"{app.url}/api/upwork/profile/sync",
            headers=headers,
            cookies={"access_token": cookies["access_token"]},
            timeout=60,
        )
        return r.status_code, "" if r.status_code == 200 else r.text

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(call, range(50)))
    assert [a for a in answers if a[0] != 200] == []
    assert app.sandbox_state.stats["token_refresh"] == 1
    assert count(app.db_path, "profile_syncs") == 51  # sign-in + 50


def test_crashed_refresher_lease_times_out(app_factory: AppFactory) -> None:
    # A dead holder's lease, a second from running out; ours would give up after twice
    # the lease (6 s): room for a busy host.
    app = app_factory(upwork_refresh_lease_seconds=3.0)
    browser, user_id = sign_in(app, SANDBOX_USERS["alex"])
    expire_access(app.db_path, user_id)
    until = sqlite_time(datetime.now(UTC) + timedelta(seconds=1))
    rows(
        app.db_path,
        "UPDATE upwork_connections SET refresh_lease_owner='dead-process', "
        "refresh_lease_until=? WHERE user_id=?",
        until,
        user_id,
    )
    r = sync(browser)
    assert r.status_code == 200, r.text
    assert app.sandbox_state.stats["token_refresh"] == 1
    assert connection_row(app.db_path, user_id)["refresh_lease_owner"] is None


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_dead_refresh_token_needs_reauth_then_reconnect(running: RunningApp, how: str) -> None:
    browser, user_id = sign_in(running, SANDBOX_USERS["olena"])
    _, refresh = stored_tokens(running, user_id)
    grant = running.sandbox_state.refresh_tokens[refresh]
    if how == "expired":
        grant.expires_at = 0.0
    else:
        grant.revoked = True
    expire_access(running.db_path, user_id)

    r = sync(browser)
    assert r.status_code == 409 and r.json()["error"] == "upwork_reauth_required"
    assert "Reconnect" in r.json()["message"]
    conn = browser.get("/api/upwork/connection", headers=JSON).json()
    assert conn["status"] == "needs_reauth"
    assert audit_events(running.db_path, "upwork.reauth_required")[-1]["reason"] == "invalid_grant"

    # No further calls to Upwork for this user.
    stats_before = dict(running.sandbox_state.stats)
    assert sync(browser).status_code == 409
    assert dict(running.sandbox_state.stats) == stats_before

    page = browser.get("/").text
    assert "Reconnect Upwork" in page and "Needs reconnecting" in page

    # Reconnect: the sign-in flow again restores the connection on the same account.
    browser.sign_in(SANDBOX_USERS["olena"])
    assert browser.get("/api/upwork/connection", headers=JSON).json()["status"] == "connected"
    assert browser.get("/api/auth/me", headers=JSON).json()["id"] == user_id
    assert count(running.db_path, "users") == 1
    assert sync(browser).status_code == 200


@pytest.mark.parametrize(
    ("faults", "code", "status"),
    [
        ({"token_status": 500}, "token_exchange_failed", 502),
        ({"token_non_json": True}, "token_exchange_failed", 502),
        # Non-rotating here: a refresh Upwork completes after we gave up would otherwise
        # rotate the pair away (see docs/upwork-tokens.md), and recovery would race it.
        ({"token_delay": 2.0, "rotate_refresh_token": False}, "upwork_unavailable", 503),
    ],
)
def test_failed_refresh_keeps_the_working_pair(
    app_factory: AppFactory, faults: dict[str, object], code: str, status: int
) -> None:
    app = app_factory(upwork_http_timeout=1.0)  # the 2 s delay times out, nothing else
    browser, user_id = sign_in(app, SANDBOX_USERS["alex"])
    before = connection_row(app.db_path, user_id)
    expire_access(app.db_path, user_id)
    app.faults(**faults)
    r = sync(browser)
    assert r.status_code == status and r.json()["error"] == code
    after = connection_row(app.db_path, user_id)
    assert after["access_token_ct"] == before["access_token_ct"]
    assert after["refresh_token_ct"] == before["refresh_token_ct"]
    assert after["status"] == "active" and after["refresh_lease_owner"] is None
    assert audit_events(app.db_path, "upwork.refresh_failed")[-1]["reason_code"] == code
    # Upwork recovers: the same pair refreshes fine.
    httpx.delete(f"{app.url}/sandbox/upwork/_sandbox/faults")
    assert sync(browser).status_code == 200
