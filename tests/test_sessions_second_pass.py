"""Issue 13, second pass on sessions: sign-out once the access token has expired, a rate
limited refresh whose refusals are aggregated, no refresh token recoverable from the
database, the grace window bound to a cookie, and refusals in the security log."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import time
from typing import Any

import httpx

from upwork_assistant.api import deps

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser, rows
from .test_sessions import binding_of, refresh_with, tokens_of
from .upwork_helpers import JSON, audit_events, sign_in, wait_until


def expire_access_cookie(browser: Browser) -> None:
    """What a browser does when the access cookie's max-age (the JWT's lifetime) is up."""
    browser.client.cookies.delete("access_token")


def session_state(app: RunningApp) -> list[tuple[Any, ...]]:
    return rows(app.db_path, "SELECT revoked_at IS NOT NULL, revoked_reason FROM sessions")


def flood(n: int, call: Any) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def refusal_rows(app: RunningApp, event_type: str) -> list[tuple[Any, ...]]:
    return rows(
        app.db_path,
        "SELECT user_id, details FROM audit_events WHERE event_type=? ORDER BY id",
        event_type,
    )


# ------------------------------------------------------------------ item 1: sign-out


def test_sign_out_after_the_access_token_expired_ends_the_session(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    refresh, csrf, _ = tokens_of(browser)
    page_csrf = csrf  # what the Sign out form of a page opened earlier still carries
    expire_access_cookie(browser)

    out = browser.post("/api/auth/logout", data={"csrf_token": page_csrf})
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert out.headers["clear-site-data"] == '"cookies"'
    assert session_state(running) == [(1, "logout")]
    revoked = audit_events(running.db_path, "session.revoked")
    assert revoked == [{"reason": "logout"}]
    # The refresh token died with the session.
    again = refresh_with(running, refresh, csrf, browser.client.headers["user-agent"])
    assert again.status_code == 401
    assert "refresh_token" not in browser.client.cookies


def test_api_sign_out_with_only_the_refresh_cookie(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    refresh, csrf, _ = tokens_of(browser)
    r = httpx.post(
        f"{running.url}/api/auth/logout",
        headers={**JSON, "X-CSRF-Token": csrf},
        cookies={"refresh_token": refresh},
    )
    assert r.status_code == 200 and r.json() == {"signed_out": True}
    assert r.headers["clear-site-data"] == '"cookies"'
    assert session_state(running) == [(1, "logout")]


def test_sign_out_cannot_be_forced_cross_site(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    refresh, csrf, _ = tokens_of(browser)
    expire_access_cookie(browser)

    # The refresh cookie names the session, so its CSRF token is required.
    forged = browser.post("/api/auth/logout", headers=JSON)
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
    wrong = browser.post("/api/auth/logout", headers={**JSON, "X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert session_state(running) == [(0, None)]
    assert "clear-site-data" not in forged.headers

    # No session cookie at all (SameSite keeps them off a cross-site post): another site
    # still may not clear this browser's cookies.
    cross_site = {**JSON, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    r = httpx.post(f"{running.url}/api/auth/logout", headers=cross_site)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = httpx.post(f"{running.url}/api/auth/logout", headers={**JSON, "Origin": "null"})
    assert r.status_code == 403
    # Our own pages (and clients that are no browser) may.
    same = httpx.post(f"{running.url}/api/auth/logout", headers={**JSON, "Origin": running.url})
    assert same.status_code == 200 and same.json() == {"signed_out": False}
    assert session_state(running) == [(0, None)]
    assert refresh_with(running, refresh, csrf, "x").status_code == 200


# ------------------------------------------------------------------ item 2: refresh


def test_refresh_is_rate_limited_per_client_ip(app_factory: AppFactory) -> None:
    app = app_factory(signin_rate_limit="3/minute")

    def unknown() -> httpx.Response:
        return httpx.post(
            f"{app.url}/api/auth/refresh",
            headers={**JSON, "X-CSRF-Token": "x"},
            cookies={"refresh_token": secrets.token_urlsafe(32)},
        )

    # One first, alone: the very first security-log record of a fresh database creates
    # the chain head, which two concurrent first records would both try to (audit.py).
    results = [unknown(), *flood(7, unknown)]
    codes = [r.status_code for r in results]
    # At most the budget gets through (under a concurrent burst the limiter may refuse one
    # more: it errs on the side of refusing); everything else is a 429.
    assert set(codes) == {401, 429} and codes.count(401) <= 3, codes
    assert all(r.headers["retry-after"] for r in results if r.status_code == 429)


def test_a_flood_of_unknown_refresh_tokens_writes_one_record(running: RunningApp) -> None:
    before = rows(running.db_path, "SELECT count(*) FROM audit_events")[0][0]
    results = flood(
        40,
        lambda: httpx.post(
            f"{running.url}/api/auth/refresh",
            headers={**JSON, "X-CSRF-Token": "x"},
            cookies={"refresh_token": secrets.token_urlsafe(32)},
        ),
    )
    assert {r.status_code for r in results} == {401}
    assert audit_events(running.db_path, "session.refresh_rejected") == [
        {"count": 1, "window_seconds": 60, "path": "/api/auth/refresh"}
    ]
    assert rows(running.db_path, "SELECT count(*) FROM audit_events")[0][0] == before + 1


def test_a_first_refusal_is_recorded_however_young_the_clock() -> None:
    """The monotonic clock counts from boot: on a host up for less than the window, the
    first refusal of a client was measured against time 0 and held back, not recorded."""
    tally = deps.RefusalTally(clock=lambda: 5.0)
    assert tally.add("session.refresh_rejected::10.0.0.1") == 1
    assert tally.add("session.refresh_rejected::10.0.0.1") is None  # then held back


def test_the_next_record_counts_the_refusals_it_stands_for(running: RunningApp) -> None:
    # The tally's clock moves only when the test moves it (a busy host once took longer
    # than a shortened window for the flood); the budget shared by processes is out of the
    # way, so the tally alone decides when a record is due.
    services = running.app.state.services
    clock = [1000.0]
    running.app.state.refusal_tally = deps.RefusalTally(clock=lambda: clock[0])
    services.rate_limit_audit = services.limiter.budget("refusal-test", "1000 per second")

    def unknown() -> httpx.Response:
        return httpx.post(
            f"{running.url}/api/auth/refresh",
            headers={**JSON, "X-CSRF-Token": "x"},
            cookies={"refresh_token": secrets.token_urlsafe(32)},
        )

    flood(12, unknown)
    clock[0] += deps.REFUSAL_WINDOW - 0.001
    unknown()  # still within the window: held back
    clock[0] += 0.001
    unknown()
    counts = [d["count"] for d in audit_events(running.db_path, "session.refresh_rejected")]
    assert counts == [1, 13]  # the first refusal, then the 12 held back and this one


# ------------------------------------------------------------------ item 9: nothing stored


def test_no_refresh_token_is_recoverable_from_the_database(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    first = refresh_with(running, old, csrf, ua, binding)
    live = first.cookies["refresh_token"]
    # Nothing reversible is kept for the grace window: no ciphertext at all.
    assert rows(running.db_path, "SELECT grace_kid, grace_ct FROM sessions") == [(None, None)]
    tables = ("sessions", "rotated_refresh_tokens")
    dump = json.dumps(
        [rows(running.db_path, f"SELECT * FROM {t}") for t in tables],  # noqa: S608
        default=str,
    )
    assert live not in dump and old not in dump
    # ...and a racing tab still gets the very same token.
    second = refresh_with(running, old, csrf, ua, binding)
    assert second.status_code == 200 and second.cookies["refresh_token"] == live


# ------------------------------------------------------------------ item 10: binding


def test_binding_cookie_is_http_only_on_the_refresh_path(running: RunningApp) -> None:
    browser = running.browser()
    r = browser.sign_in(SANDBOX_USERS["alex"])
    cookies = r.headers.get_list("set-cookie")
    binding = [c for c in cookies if c.startswith("session_binding=")]
    assert len(binding) == 1
    assert "HttpOnly" in binding[0] and "Path=/api/auth" in binding[0]
    assert "samesite=lax" in binding[0].lower()
    out = browser.post(
        "/api/auth/logout", data={"csrf_token": browser.client.cookies["csrf_token"]}
    )
    assert any(c.startswith('session_binding=""') for c in out.headers.get_list("set-cookie"))


def test_grace_replay_without_the_binding_cookie_is_reuse(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    assert refresh_with(running, old, csrf, ua, binding).status_code == 200
    # A thief with the refresh token, the CSRF token and the same User-Agent, within the
    # window, but without the binding cookie (or with a made-up one).
    thief = refresh_with(running, old, csrf, ua, "made-up-" + binding[:20])
    assert thief.status_code == 401
    assert session_state(running) == [(1, "refresh_reuse")]
    assert audit_events(running.db_path, "session.refresh_reuse")


def test_grace_replay_with_no_binding_cookie_at_all_is_reuse(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    assert refresh_with(running, old, csrf, ua, binding).status_code == 200
    assert refresh_with(running, old, csrf, ua).status_code == 401
    assert session_state(running) == [(1, "refresh_reuse")]


# ------------------------------------------------------------------ item 15: refusals


def test_csrf_rejections_are_logged_once_a_minute_per_client(running: RunningApp) -> None:
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    access = browser.client.cookies["access_token"]
    results = flood(
        20,
        lambda: httpx.delete(
            f"{running.url}/api/security/sessions",
            headers=JSON,
            cookies={"access_token": access},
        ),
    )
    assert {r.status_code for r in results} == {403}
    wait_until(lambda: refusal_rows(running, "csrf.rejected"))
    time.sleep(0.3)  # any second record would be written by now
    [(who, details)] = refusal_rows(running, "csrf.rejected")
    assert who == user_id
    assert json.loads(details) == {
        "count": 1,
        "window_seconds": 60,
        "path": "/api/security/sessions",
    }


def test_bursts_of_invalid_access_tokens_are_logged(running: RunningApp) -> None:
    garbage = {**JSON, "Authorization": "Bearer " + "eyJ" + secrets.token_urlsafe(60)}
    results = flood(30, lambda: httpx.get(f"{running.url}/api/auth/me", headers=garbage))
    assert {r.status_code for r in results} == {401}
    events = audit_events(running.db_path, "access_token.rejected")
    assert events == [
        {"count": 1, "window_seconds": 60, "path": "/api/auth/me", "reason": "invalid"}
    ]

    # A token of a session that has ended: its own kind of record.
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    token = browser.client.cookies["access_token"]
    browser.post("/api/auth/logout", data={"csrf_token": browser.client.cookies["csrf_token"]})
    bearer = {**JSON, "Authorization": f"Bearer {token}"}
    flood(10, lambda: httpx.get(f"{running.url}/api/auth/me", headers=bearer))
    reasons = [e["reason"] for e in audit_events(running.db_path, "access_token.rejected")]
    assert reasons == ["invalid", "session_ended"]


def test_admin_route_refusals_are_logged(running: RunningApp) -> None:
    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    results = flood(10, lambda: browser.get("/api/admin/users", headers=JSON))
    assert {r.status_code for r in results} == {403}
    page = browser.get("/admin")
    assert page.status_code == 303
    wait_until(lambda: len(refusal_rows(running, "access.forbidden")) >= 1)
    time.sleep(0.3)
    [(who, details)] = refusal_rows(running, "access.forbidden")
    assert who == user_id and json.loads(details)["count"] == 1


def test_upgrade_deletes_the_grace_pairs_older_versions_stored(tmp_path: Any) -> None:
    import sqlite3

    from upwork_assistant.db.migrate import downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0007")
    downgrade(url, "-1")  # the schema the old code wrote to
    with sqlite3.connect(tmp_path / "m.db") as conn:  # foreign keys are off here
        conn.execute(
            "INSERT INTO sessions (id, user_id, refresh_token_hash, created_at, last_seen_at,"
            " expires_at, grace_kid, grace_ct) VALUES ('s', 'u', 'h', '2026-01-01 00:00:00',"
            " '2026-01-01 00:00:00', '2027-01-01 00:00:00', 'k1', x'00ff')"
        )
    upgrade(url, "0007")
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT grace_kid, grace_ct FROM sessions").fetchall() == [(None, None)]
