"""Helpers for the Upwork service tests."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from upwork_assistant.security.aad import upwork_token_aad
from upwork_assistant.security.keys import KeyRing, Sealed

from .fixtures import InProcessApp, RunningApp
from .helpers import AsyncBrowser, Browser, TestDb, rows

JSON = {"Accept": "application/json"}


def sqlite_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sign_in(app: RunningApp, upwork_id: str) -> tuple[Browser, str]:
    browser = app.browser()
    assert browser.sign_in(upwork_id).headers["location"] == "/"
    me = browser.get("/api/auth/me", headers=JSON).json()
    return browser, me["id"]


async def sign_in_inprocess(app: InProcessApp, upwork_id: str) -> tuple[AsyncBrowser, str]:
    """:func:`sign_in` for the in-process tier: the whole flow through the sandbox."""
    browser = app.browser()
    assert (await browser.sign_in(upwork_id)).headers["location"] == "/"
    me = (await browser.get("/api/auth/me", headers=JSON)).json()
    return browser, me["id"]


def csrf_headers(browser: Browser | AsyncBrowser) -> dict[str, str]:
    return {**JSON, "X-CSRF-Token": browser.client.cookies["csrf_token"]}


def sync(browser: Browser) -> httpx.Response:
    return browser.post("/api/upwork/profile/sync", headers=csrf_headers(browser))


async def sync_inprocess(browser: AsyncBrowser) -> httpx.Response:
    """:func:`sync` for the in-process tier."""
    return await browser.post("/api/upwork/profile/sync", headers=csrf_headers(browser))


def sandbox_refresh(app: RunningApp, refresh_token: str) -> httpx.Response:
    """A refresh at the mounted sandbox with the app's own credentials (in the body)."""
    return httpx.post(
        f"{app.url}/sandbox/upwork/api/v3/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": app.settings.oauth_client_id,
            "client_secret": app.settings.oauth_client_secret,
        },
    )


async def sandbox_refresh_inprocess(app: InProcessApp, refresh_token: str) -> httpx.Response:
    """:func:`sandbox_refresh` for the in-process tier."""
    return await app.client().post(
        "/sandbox/upwork/api/v3/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": app.settings.oauth_client_id,
            "client_secret": app.settings.oauth_client_secret,
        },
    )


def expire_access(db_path: TestDb, user_id: str) -> None:
    past = sqlite_time(datetime.now(UTC) - timedelta(minutes=1))
    rows(
        db_path, "UPDATE upwork_connections SET access_expires_at=? WHERE user_id=?", past, user_id
    )


def connection_row(db_path: TestDb, user_id: str) -> dict[str, Any]:
    names = [
        "access_token_kid",
        "access_token_ct",
        "refresh_token_kid",
        "refresh_token_ct",
        "status",
        "access_expires_at",
        "refresh_expires_at",
        "last_refresh_at",
        "refresh_lease_owner",
        "refresh_lease_until",
        "organization_id",
    ]
    values = rows(
        db_path,
        f"SELECT {', '.join(names)} FROM upwork_connections "  # noqa: S608
        "WHERE user_id=?",
        user_id,
    )[0]
    return dict(zip(names, values, strict=True))


def stored_tokens(app: RunningApp | InProcessApp, user_id: str) -> tuple[str, str | None]:
    conn = connection_row(app.db_path, user_id)
    ring = KeyRing(app.settings.secrets.token_encryption_keys)
    access = ring.decrypt(
        Sealed(conn["access_token_kid"], conn["access_token_ct"]),
        aad=upwork_token_aad(user_id, "access"),
    )
    refresh = None
    if conn["refresh_token_ct"]:
        refresh = ring.decrypt(
            Sealed(conn["refresh_token_kid"], conn["refresh_token_ct"]),
            aad=upwork_token_aad(user_id, "refresh"),
        )
    return access, refresh


def audit_events(db_path: TestDb, event_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(r[0])
        for r in rows(db_path, "SELECT details FROM audit_events WHERE event_type=?", event_type)
    ]


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


async def wait_until_inprocess(predicate: Any, within: float = 10.0) -> None:
    """:func:`wait_until` for the in-process tier: waits without blocking the event loop
    (the app's own tasks run on it). ``predicate`` may be a coroutine function."""

    async def holds() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    deadline = time.monotonic() + within
    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def age_content(app: RunningApp | InProcessApp, user_id: str, hours: float) -> None:
    """Make the user's Upwork content (identity, email, profile sync, the freelancer
    profile) look fetched ``hours`` ago."""
    old = sqlite_time(datetime.now(UTC) - timedelta(hours=hours))
    rows(
        app.db_path,
        "UPDATE users SET identity_fetched_at=?, email_fetched_at=?, profile_synced_at=? "
        "WHERE id=?",
        old,
        old,
        old,
        user_id,
    )
    rows(app.db_path, "UPDATE freelancer_profiles SET fetched_at=? WHERE user_id=?", old, user_id)
