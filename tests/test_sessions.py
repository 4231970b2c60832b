"""Our sessions: refresh rotation with reuse detection and a grace window, listing and
revoking sessions, isolation between users, revocation seen at once by another process.

All but the last in-process (the app through httpx.ASGITransport); the last starts a
second server process, so it stays on the real tier."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .fixtures import SANDBOX_USERS, InProcessApp, InProcessFactory, RunningApp
from .helpers import AsyncBrowser, Browser, bound_socket, refused_soon, rows
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in, sign_in_inprocess

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def refresh_with(
    app: RunningApp, token: str, csrf: str, ua: str, binding: str | None = None
) -> httpx.Response:
    cookies = {"refresh_token": token}
    if binding:  # the session's binding cookie: only the real client's tabs have it
        cookies["session_binding"] = binding
    return httpx.post(
        f"{app.url}/api/auth/refresh",
        headers={**JSON, "X-CSRF-Token": csrf, "User-Agent": ua},
        cookies=cookies,
    )


async def refresh_with_inprocess(
    app: InProcessApp, token: str, csrf: str, ua: str, binding: str | None = None
) -> httpx.Response:
    """:func:`refresh_with` for the in-process tier: a fresh client with only these cookies."""
    cookies = {"refresh_token": token}
    if binding:  # the session's binding cookie: only the real client's tabs have it
        cookies["session_binding"] = binding
    return await app.client(cookies=cookies).post(
        "/api/auth/refresh", headers={**JSON, "X-CSRF-Token": csrf, "User-Agent": ua}
    )


async def me_with(app: InProcessApp, headers: dict[str, str]) -> httpx.Response:
    """``GET /api/auth/me`` from a fresh in-process client (no cookies)."""
    return await app.client().get("/api/auth/me", headers=headers)


def binding_of(browser: Browser | AsyncBrowser) -> str:
    return browser.client.cookies.get("session_binding", path="/api/auth") or ""


def tokens_of(browser: Browser | AsyncBrowser) -> tuple[str, str, str]:
    jar = browser.client.cookies
    return (
        jar.get("refresh_token", path="/api/auth") or "",
        jar["csrf_token"],
        jar["access_token"],
    )


@pytest.mark.inprocess
async def test_refresh_reuse_after_grace_revokes_the_session(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(refresh_grace_seconds=0.3)
    browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua = browser.client.headers["user-agent"]
    first = await refresh_with_inprocess(app, old, csrf, ua)
    assert first.status_code == 200
    new_refresh = first.cookies["refresh_token"]
    new_access = first.json()["access_token"]
    await asyncio.sleep(0.4)

    reuse = await refresh_with_inprocess(app, old, csrf, ua)
    assert reuse.status_code == 401 and reuse.json()["error"] == "session_expired"
    assert audit_events(app.db_path, "session.refresh_reuse")
    assert rows(app.db_path, "SELECT revoked_reason FROM sessions") == [("refresh_reuse",)]
    # The whole session is gone: the thief's new pair and the access token both fail.
    assert (await refresh_with_inprocess(app, new_refresh, csrf, ua)).status_code == 401
    me = await me_with(app, {"Authorization": f"Bearer {new_access}"})
    assert me.status_code == 401


@pytest.mark.inprocess
async def test_grace_window_returns_the_same_pair_to_the_same_client(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    first = await refresh_with_inprocess(running, old, csrf, ua, binding)
    # the other tab, a moment later
    second = await refresh_with_inprocess(running, old, csrf, ua, binding)
    assert first.status_code == second.status_code == 200
    assert first.cookies["refresh_token"] == second.cookies["refresh_token"]
    # Each gets a working access token (no longer one kept encrypted for the retry).
    for r in (first, second):
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert (await me_with(running, bearer)).status_code == 200
    assert rows(running.db_path, "SELECT revoked_at FROM sessions") == [(None,)]
    # The pair keeps working.
    third = await refresh_with_inprocess(running, first.cookies["refresh_token"], csrf, ua)
    assert third.status_code == 200


@pytest.mark.inprocess
async def test_reuse_from_another_client_inside_the_window_revokes(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    assert (
        await refresh_with_inprocess(running, old, csrf, browser.client.headers["user-agent"])
    ).status_code == 200
    thief = await refresh_with_inprocess(running, old, csrf, "curl/8.0")
    assert thief.status_code == 401
    assert rows(running.db_path, "SELECT revoked_reason FROM sessions") == [("refresh_reuse",)]


@pytest.mark.inprocess
async def test_older_rotated_token_revokes_even_inside_the_window(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    first_token, csrf, _ = tokens_of(browser)
    ua = browser.client.headers["user-agent"]
    second_token = (await refresh_with_inprocess(running, first_token, csrf, ua)).cookies[
        "refresh_token"
    ]
    assert (await refresh_with_inprocess(running, second_token, csrf, ua)).status_code == 200
    # not the latest
    assert (await refresh_with_inprocess(running, first_token, csrf, ua)).status_code == 401


@pytest.mark.inprocess
async def test_racing_tabs_both_get_the_new_pair(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    results = await asyncio.gather(
        *(refresh_with_inprocess(running, old, csrf, ua, binding) for _ in range(4))
    )
    assert [r.status_code for r in results] == [200] * 4
    assert len({r.cookies["refresh_token"] for r in results}) == 1


@pytest.mark.inprocess
async def test_refresh_without_csrf_changes_nothing(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    old, _, _ = tokens_of(browser)
    r = await running.client(cookies={"refresh_token": old}).post("/api/auth/refresh", headers=JSON)
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    assert rows(running.db_path, "SELECT count(*) FROM rotated_refresh_tokens") == [(0,)]


@pytest.mark.inprocess
async def test_list_and_revoke_sessions(inprocess: InProcessApp) -> None:
    running = inprocess
    laptop = running.browser()
    laptop.client.headers["User-Agent"] = CHROME
    await laptop.sign_in(SANDBOX_USERS["alex"])
    phone, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])

    listed = (await laptop.get("/api/security/sessions", headers=JSON)).json()
    assert len(listed) == 2
    current = [s for s in listed if s["is_current"]]
    assert len(current) == 1 and current[0]["device"] == "Chrome on Linux"
    assert current[0]["ip"] == "127.0.0.1"
    assert set(current[0]) == {
        "id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "ip",
        "user_agent",
        "device",
        "is_current",
    }
    phone_id = next(s["id"] for s in listed if not s["is_current"])

    r = await laptop.client.delete(
        f"/api/security/sessions/{phone_id}", headers=csrf_headers(laptop)
    )
    assert r.status_code == 204
    assert (await phone.get("/api/auth/me", headers=JSON)).status_code == 401  # at once
    again = await laptop.client.delete(
        f"/api/security/sessions/{phone_id}", headers=csrf_headers(laptop)
    )
    assert again.status_code == 404 and again.json()["error"] == "session_not_found"
    assert [s["id"] for s in (await laptop.get("/api/security/sessions", headers=JSON)).json()] == [
        current[0]["id"]
    ]


@pytest.mark.inprocess
async def test_revoke_all_others_keeps_the_current_one(inprocess: InProcessApp) -> None:
    running = inprocess
    main, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    others = [(await sign_in_inprocess(running, SANDBOX_USERS["alex"]))[0] for _ in range(3)]
    r = await main.client.delete("/api/security/sessions", headers=csrf_headers(main))
    assert r.json() == {"revoked": 3}
    assert (await main.get("/api/auth/me", headers=JSON)).status_code == 200
    assert all([(await o.get("/api/auth/me", headers=JSON)).status_code == 401 for o in others])


@pytest.mark.inprocess
async def test_users_see_and_revoke_only_their_own_sessions(inprocess: InProcessApp) -> None:
    running = inprocess
    alex, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    olena, _ = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    alex_sessions = (await alex.get("/api/security/sessions", headers=JSON)).json()
    olena_sessions = (await olena.get("/api/security/sessions", headers=JSON)).json()
    assert len(alex_sessions) == len(olena_sessions) == 1
    assert alex_sessions[0]["id"] != olena_sessions[0]["id"]
    r = await olena.client.delete(
        f"/api/security/sessions/{alex_sessions[0]['id']}", headers=csrf_headers(olena)
    )
    assert r.status_code == 404
    # Nor through the page's form.
    form = await olena.post(
        f"/security/sessions/{alex_sessions[0]['id']}/revoke",
        data={"csrf_token": olena.client.cookies["csrf_token"]},
    )
    assert form.headers["location"] == "/security?error=session_not_found"
    assert (await alex.get("/api/auth/me", headers=JSON)).status_code == 200
    r = await olena.client.delete("/api/security/sessions", headers=csrf_headers(olena))
    assert r.json() == {"revoked": 0}
    assert (await alex.get("/api/auth/me", headers=JSON)).status_code == 200


@pytest.mark.inprocess
async def test_session_routes_need_sign_in_and_csrf(inprocess: InProcessApp) -> None:
    running = inprocess
    api = running.api()
    assert (await api.get("/api/security/sessions")).status_code == 401
    assert (await api.delete("/api/security/sessions")).status_code == 401
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    assert (await browser.client.delete("/api/security/sessions", headers=JSON)).status_code == 403


def test_revocation_is_seen_at_once_by_another_server_process(running: RunningApp) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPWORK_", "APP_", "DATABASE_", "SECRET_", "TOKEN_"))
    }
    env.update(
        {
            "APP_BASE_URL": running.url,  # one deployment: the same issuer
            "DATA_DIR": str(running.settings.data_dir),
            "DATABASE_URL": running.db_path.url,
        }
    )
    cli = str(Path(sys.executable).parent / "upwork-assistant")
    proc = subprocess.Popen(
        [cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    other = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{other}/healthz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        browser, _ = sign_in(running, SANDBOX_USERS["alex"])
        access = browser.client.cookies["access_token"]
        bearer = {"Authorization": f"Bearer {access}"}
        assert httpx.get(f"{other}/api/auth/me", headers=bearer).status_code == 200
        out = browser.post(
            "/api/auth/logout", data={"csrf_token": browser.client.cookies["csrf_token"]}
        )
        assert out.status_code == 303
        refused_soon(f"{other}/api/auth/me", running.db_path, bearer)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
