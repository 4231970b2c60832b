"""Security, second pass (issue 13): each defect named there, tested as a behaviour."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from upwork_assistant.app import create_app
from upwork_assistant.config import Settings
from upwork_assistant.security.ratelimit import RateLimiter

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp, flush_redis, production_settings
from .helpers import rows
from .upwork_helpers import JSON, csrf_headers, sign_in

REDIS = os.environ.get("TEST_REDIS_URL")


# ----- 6. rate limits are atomic --------------------------------------------------------


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_fifty_concurrent_hits_against_ten_let_exactly_ten_through(storage: str) -> None:
    if storage == "redis":
        if not REDIS:
            pytest.skip("Redis runs in the second pass of make test (TEST_REDIS_URL)")
        flush_redis()
        limiter = RateLimiter(f"async+{REDIS}")
    else:
        limiter = RateLimiter("async+memory://")
    budget = limiter.budget("burst", "10/minute;1000/day")
    waits = await asyncio.gather(*[budget.hit("one-key") for _ in range(50)])
    assert sum(1 for w in waits if w == 0) == 10
    assert all(w > 0 for w in waits if w != 0)


def test_a_concurrent_burst_over_http_never_passes_the_limit(app_factory: AppFactory) -> None:
    app = app_factory(signin_rate_limit="10/minute")

    def start(_: int) -> int:
        with app.api() as api:
            return api.get("/api/auth/upwork/authorize").status_code

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(start, range(50)))
    assert codes.count(200) == 10 and codes.count(429) == 40


# ----- 7. personal and secret answers are never cacheable -------------------------------


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)


def test_every_api_answer_is_no_store(running: RunningApp) -> None:
    """Driven by the OpenAPI document, so a new route is covered by being there."""
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    setup = browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))
    assert setup.status_code == 200 and "no-store" in setup.headers["cache-control"]
    spec = browser.get("/openapi.json").json()
    headers = csrf_headers(browser)
    last = {"/api/account", "/api/auth/logout"}  # they end the session for the rest
    routes = [
        (method.upper(), path)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/")
        for method in methods
    ]
    routes.sort(key=lambda route: route[1] in last)
    ok = 0
    for method, path in routes:
        r = browser.client.request(method, _fill(path), headers=headers)
        assert "no-store" in r.headers.get("cache-control", ""), (method, path, r.status_code)
        ok += r.status_code < 400
    assert len(routes) >= 20 and ok >= 10  # most answered with data, not only errors


# ----- 11. the sandbox's fault controls are never open in production --------------------


def _production(tmp_path: Path, **extra: object) -> Settings:
    return production_settings(tmp_path, **extra)


async def test_sandbox_controls_are_off_in_production(tmp_path: Path) -> None:
    app = create_app(_production(tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://demo.example") as c:
        for method, path in (
            ("GET", "/_sandbox/faults"),
            ("PATCH", "/_sandbox/faults"),
            ("DELETE", "/_sandbox/faults"),
            ("GET", "/_sandbox/stats"),
        ):
            r = await c.request(method, "/sandbox/upwork" + path, json={"graphql_status": 500})
            assert r.status_code == 404, (method, path)
        # The sandbox itself still works for the demo.
        assert (await c.get("/sandbox/upwork/")).status_code == 200


async def test_sandbox_controls_need_the_operator_token_when_one_is_set(tmp_path: Path) -> None:
    token = "c" * 40
    app = create_app(_production(tmp_path, sandbox_controls_token=token))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://demo.example") as c:
        url = "/sandbox/upwork/_sandbox/faults"
        assert (await c.patch(url, json={"graphql_status": 500})).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 40}
        assert (await c.get(url, headers=wrong)).status_code == 401
        good = {"Authorization": f"Bearer {token}"}
        r = await c.patch(url, json={"graphql_status": 500}, headers=good)
        assert r.status_code == 200 and r.json()["graphql_status"] == 500


# ----- 13. tables stay bounded ----------------------------------------------------------


def test_worker_prunes_rows_past_their_use(running: RunningApp) -> None:
    from .test_security_log import cli
    from .upwork_helpers import sqlite_time

    ended_browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    live_browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    for browser in (ended_browser, live_browser):  # one rotated refresh token each
        assert browser.post("/api/auth/refresh", headers=csrf_headers(browser)).status_code == 200
    ended_id = rows(running.db_path, "SELECT id FROM sessions ORDER BY created_at")[0][0]
    long_ago = sqlite_time(datetime.now(UTC) - timedelta(days=40))
    rows(
        running.db_path,
        "UPDATE sessions SET revoked_at=?, revoked_reason='logout' WHERE id=?",
        long_ago,
        ended_id,
    )
    for age in (timedelta(days=2), timedelta(minutes=1)):
        rows(
            running.db_path,
            "INSERT INTO mfa_failures (user_id, created_at) VALUES (?, ?)",
            user_id,
            sqlite_time(datetime.now(UTC) - age),
        )
    for days in (60, 45):  # two old sync records; the sign-in's is the latest
        rows(
            running.db_path,
            'INSERT INTO profile_syncs (user_id, "trigger", started_at, finished_at, '
            "succeeded, changed) VALUES (?, 'manual', ?, ?, ?, '[]')",
            user_id,
            sqlite_time(datetime.now(UTC) - timedelta(days=days)),
            sqlite_time(datetime.now(UTC) - timedelta(days=days)),
            True,
        )
    result = cli(running, "worker", "--once")
    assert result.returncode == 0, result.stderr
    sessions = [r[0] for r in rows(running.db_path, "SELECT id FROM sessions")]
    assert ended_id not in sessions and len(sessions) == 1
    assert rows(running.db_path, "SELECT session_id FROM rotated_refresh_tokens") == [
        (sessions[0],)
    ]
    assert rows(running.db_path, "SELECT count(*) FROM mfa_failures")[0][0] == 1
    triggers = {r[0] for r in rows(running.db_path, 'SELECT "trigger" FROM profile_syncs')}
    assert triggers == {"signin"}
    # The live session still works, with its reuse detection intact.
    assert live_browser.get("/api/auth/me", headers=JSON).status_code == 200


# ----- 4. an unreadable MFA secret answers clearly, never 500 ---------------------------


def test_unreadable_mfa_secret_is_a_clear_409_and_backup_codes_still_work(
    running: RunningApp,
) -> None:
    import pyotp

    from .test_mfa import enable_mfa, sign_out, start_mfa_sign_in, submit
    from .upwork_helpers import audit_events

    browser, user_id = sign_in(running, SANDBOX_USERS["olena"])
    secret, backup = enable_mfa(browser)
    sign_out(browser)
    rows(running.db_path, "UPDATE users SET mfa_secret_ct=? WHERE id=?", b"damaged", user_id)
    start_mfa_sign_in(browser, SANDBOX_USERS["olena"])
    r = submit(browser, pyotp.TOTP(secret).now(), as_json=True)
    assert r.status_code == 409 and r.json()["error"] == "mfa_secret_unreadable"
    assert audit_events(running.db_path, "mfa.secret_unreadable")
    assert submit(browser, backup[0], as_json=True).status_code == 200


def test_the_first_security_records_may_race(app_factory: AppFactory) -> None:
    """A fresh database: ten failed sign-ins at once write the first chained records
    together (the chain's head row exists from the migration on; it used to be inserted by
    whichever record came first, and the others failed on PostgreSQL)."""
    app = app_factory()

    def fail(_: int) -> int:
        with app.api() as api:
            return api.get("/api/auth/upwork/callback", params={"state": "x"}).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(fail, range(10)))
    assert codes == [400] * 10
    assert rows(app.db_path, "SELECT count(*) FROM audit_events")[0][0] == 10
