"""Our sessions: refresh rotation with reuse detection and a grace window, listing and
revoking sessions, isolation between users, revocation seen at once by another process."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser, bound_socket, rows
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in

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


def binding_of(browser: Browser) -> str:
    return browser.client.cookies.get("session_binding", path="/api/auth") or ""


def tokens_of(browser: Browser) -> tuple[str, str, str]:
    jar = browser.client.cookies
    return (
        jar.get("refresh_token", path="/api/auth") or "",
        jar["csrf_token"],
        jar["access_token"],
    )


def test_refresh_reuse_after_grace_revokes_the_session(app_factory: AppFactory) -> None:
    app = app_factory(refresh_grace_seconds=0.3)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua = browser.client.headers["user-agent"]
    first = refresh_with(app, old, csrf, ua)
    assert first.status_code == 200
    new_refresh = first.cookies["refresh_token"]
    new_access = first.json()["access_token"]
    time.sleep(0.4)

    reuse = refresh_with(app, old, csrf, ua)
    assert reuse.status_code == 401 and reuse.json()["error"] == "session_expired"
    assert audit_events(app.db_path, "session.refresh_reuse")
    assert rows(app.db_path, "SELECT revoked_reason FROM sessions") == [("refresh_reuse",)]
    # The whole session is gone: the thief's new pair and the access token both fail.
    assert refresh_with(app, new_refresh, csrf, ua).status_code == 401
    me = httpx.get(f"{app.url}/api/auth/me", headers={"Authorization": f"Bearer {new_access}"})
    assert me.status_code == 401


def test_grace_window_returns_the_same_pair_to_the_same_client(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    first = refresh_with(running, old, csrf, ua, binding)
    second = refresh_with(running, old, csrf, ua, binding)  # the other tab, a moment later
    assert first.status_code == second.status_code == 200
    assert first.cookies["refresh_token"] == second.cookies["refresh_token"]
    # Each gets a working access token (no longer one kept encrypted for the retry).
    for r in (first, second):
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert httpx.get(f"{running.url}/api/auth/me", headers=bearer).status_code == 200
    assert rows(running.db_path, "SELECT revoked_at FROM sessions") == [(None,)]
    # The pair keeps working.
    third = refresh_with(running, first.cookies["refresh_token"], csrf, ua)
    assert third.status_code == 200


def test_reuse_from_another_client_inside_the_window_revokes(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    assert refresh_with(running, old, csrf, browser.client.headers["user-agent"]).status_code == 200
    thief = refresh_with(running, old, csrf, "curl/8.0")
    assert thief.status_code == 401
    assert rows(running.db_path, "SELECT revoked_reason FROM sessions") == [("refresh_reuse",)]


def test_older_rotated_token_revokes_even_inside_the_window(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    first_token, csrf, _ = tokens_of(browser)
    ua = browser.client.headers["user-agent"]
    second_token = refresh_with(running, first_token, csrf, ua).cookies["refresh_token"]
    assert refresh_with(running, second_token, csrf, ua).status_code == 200
    assert refresh_with(running, first_token, csrf, ua).status_code == 401  # not the latest


def test_racing_tabs_both_get_the_new_pair(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, csrf, _ = tokens_of(browser)
    ua, binding = browser.client.headers["user-agent"], binding_of(browser)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: refresh_with(running, old, csrf, ua, binding), range(4))
        )
    assert [r.status_code for r in results] == [200] * 4
    assert len({r.cookies["refresh_token"] for r in results}) == 1


def test_refresh_without_csrf_changes_nothing(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old, _, _ = tokens_of(browser)
    r = httpx.post(f"{running.url}/api/auth/refresh", headers=JSON, cookies={"refresh_token": old})
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    assert rows(running.db_path, "SELECT count(*) FROM rotated_refresh_tokens") == [(0,)]


def test_list_and_revoke_sessions(running: RunningApp) -> None:
    laptop = running.browser()
    laptop.client.headers["User-Agent"] = CHROME
    laptop.sign_in(SANDBOX_USERS["alex"])
    phone, _ = sign_in(running, SANDBOX_USERS["alex"])

    listed = laptop.get("/api/security/sessions", headers=JSON).json()
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

    r = laptop.client.delete(f"/api/security/sessions/{phone_id}", headers=csrf_headers(laptop))
    assert r.status_code == 204
    assert phone.get("/api/auth/me", headers=JSON).status_code == 401  # at once
    again = laptop.client.delete(f"/api/security/sessions/{phone_id}", headers=csrf_headers(laptop))
    assert again.status_code == 404 and again.json()["error"] == "session_not_found"
    assert [s["id"] for s in laptop.get("/api/security/sessions", headers=JSON).json()] == [
        current[0]["id"]
    ]


def test_revoke_all_others_keeps_the_current_one(running: RunningApp) -> None:
    main, _ = sign_in(running, SANDBOX_USERS["alex"])
    others = [sign_in(running, SANDBOX_USERS["alex"])[0] for _ in range(3)]
    r = main.client.delete("/api/security/sessions", headers=csrf_headers(main))
    assert r.json() == {"revoked": 3}
    assert main.get("/api/auth/me", headers=JSON).status_code == 200
    assert all(o.get("/api/auth/me", headers=JSON).status_code == 401 for o in others)


def test_users_see_and_revoke_only_their_own_sessions(running: RunningApp) -> None:
    alex, _ = sign_in(running, SANDBOX_USERS["alex"])
    olena, _ = sign_in(running, SANDBOX_USERS["olena"])
    alex_sessions = alex.get("/api/security/sessions", headers=JSON).json()
    olena_sessions = olena.get("/api/security/sessions", headers=JSON).json()
    assert len(alex_sessions) == len(olena_sessions) == 1
    assert alex_sessions[0]["id"] != olena_sessions[0]["id"]
    r = olena.client.delete(
        f"/api/security/sessions/{alex_sessions[0]['id']}", headers=csrf_headers(olena)
    )
    assert r.status_code == 404
    # Nor through the page's form.
    form = olena.post(
        f"/security/sessions/{alex_sessions[0]['id']}/revoke",
        data={"csrf_token": olena.client.cookies["csrf_token"]},
    )
    assert form.headers["location"] == "/security?error=session_not_found"
    assert alex.get("/api/auth/me", headers=JSON).status_code == 200
    r = olena.client.delete("/api/security/sessions", headers=csrf_headers(olena))
    assert r.json() == {"revoked": 0}
    assert alex.get("/api/auth/me", headers=JSON).status_code == 200


def test_session_routes_need_sign_in_and_csrf(running: RunningApp) -> None:
    api = running.api()
    assert api.get("/api/security/sessions").status_code == 401
    assert api.delete("/api/security/sessions").status_code == 401
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    assert browser.client.delete("/api/security/sessions", headers=JSON).status_code == 403


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
        assert httpx.get(f"{other}/api/auth/me", headers=bearer).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
