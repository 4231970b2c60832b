"""Deleting an account: everything personal goes, the security log stays whole (in-process:
the app through httpx.ASGITransport)."""

from __future__ import annotations

import pytest

from .fixtures import SANDBOX_USERS, InProcessApp
from .helpers import count, rows
from .test_mfa import code_at, enable_mfa_inprocess
from .test_security_log import verify_inprocess
from .upwork_helpers import JSON, csrf_headers, sign_in_inprocess

#: Nothing here needs a socket: the app is reached in-process (tests/fixtures.py).
pytestmark = pytest.mark.inprocess


async def test_delete_account_removes_everything_and_anonymises_the_log(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    other, other_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    # Her freelancer profile (Ukrainian overview and all) is held until the account goes.
    assert count(running.db_path, "freelancer_profiles") == 2
    no_csrf = await browser.client.delete("/api/account", headers=JSON)
    assert no_csrf.status_code == 403
    r = await browser.client.delete("/api/account", headers=csrf_headers(browser))
    assert r.status_code == 200 and r.json() == {"deleted": True}
    assert (await browser.get("/api/auth/me", headers=JSON)).status_code == 401

    for table, column in (
        ("users", "id"),
        ("upwork_connections", "user_id"),
        ("sessions", "user_id"),
        ("profile_syncs", "user_id"),
        ("freelancer_profiles", "user_id"),
    ):
        assert rows(
            running.db_path,
            f"SELECT count(*) FROM {table} WHERE {column}=?",  # noqa: S608
            user_id,
        ) == [(0,)]
    assert rows(running.db_path, "SELECT count(*) FROM audit_events WHERE user_id=?", user_id) == [
        (0,)
    ]
    anonymised = rows(
        running.db_path,
        "SELECT ip, user_agent, session_id FROM audit_events WHERE anonymised_at IS NOT NULL",
    )
    assert anonymised and all(r == (None, None, None) for r in anonymised)
    assert rows(
        running.db_path, "SELECT count(*) FROM audit_events WHERE event_type='account.deleted'"
    ) == [(1,)]
    raw = running.db_path.read_bytes()
    assert "Олена".encode() not in raw and b"olena.kovalenko" not in raw
    assert (await verify_inprocess(running)).ok  # anonymising kept the chain whole

    # The other user is untouched; signing in again makes a fresh account.
    assert (await other.get("/api/auth/me", headers=JSON)).json()["id"] == other_id
    again = (
        await browser.get(
            await browser.decide(await browser.start_sign_in(), SANDBOX_USERS["olena"]),
            headers=JSON,
        )
    ).json()
    assert again["created"] is True and again["user"]["id"] != user_id
    assert count(running.db_path, "users") == 2


async def test_delete_account_with_mfa_needs_a_fresh_code(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    secret, _ = await enable_mfa_inprocess(browser)
    missing = await browser.client.delete("/api/account", headers=csrf_headers(browser))
    assert missing.status_code == 400 and missing.json()["error"] == "mfa_code_required"
    wrong = await browser.client.request(
        "DELETE",
        "/api/account",
        headers=csrf_headers(browser),
        json={"code": "000000" if code_at(secret, 1) != "000000" else "111111"},
    )
    assert wrong.status_code == 400
    ok = await browser.client.request(
        "DELETE", "/api/account", headers=csrf_headers(browser), json={"code": code_at(secret, 1)}
    )
    assert ok.status_code == 200
    assert count(running.db_path, "users") == 0
    assert count(running.db_path, "mfa_backup_codes") == 0
