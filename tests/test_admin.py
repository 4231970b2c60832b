"""Roles and administration: promote on the command line, block and unblock, stats, and
403 for non-admins on every admin route.

The tests that need no admin run in-process (the app through httpx.ASGITransport); making
an admin runs `upwork-assistant users promote` as a subprocess, so those stay on the real
tier."""

from __future__ import annotations

import re

import pytest

from .fixtures import SANDBOX_USERS, InProcessApp, RunningApp
from .helpers import Browser, rows
from .test_security_log import cli
from .upwork_helpers import JSON, csrf_headers, sign_in, sign_in_inprocess


def make_admin(app: RunningApp) -> tuple[Browser, str]:
    browser, user_id = sign_in(app, SANDBOX_USERS["alex"])
    result = cli(app, "users", "promote", SANDBOX_USERS["alex"])
    assert result.returncode == 0, result.stderr
    assert "is now an admin" in result.stdout
    return browser, user_id


WEB_ADMIN_ROUTES = [
    ("GET", "/admin"),
    ("POST", "/admin/users/some-id/block"),
    ("POST", "/admin/users/some-id/unblock"),
]


def admin_routes(app: RunningApp | InProcessApp) -> list[tuple[str, str]]:
    """Every admin operation of the API (from its OpenAPI document) and of the pages."""
    found = list(WEB_ADMIN_ROUTES)
    for path, operations in app.app.openapi()["paths"].items():
        if path.startswith("/api/admin"):
            for method in operations:
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "some-id", path)))
    return found


@pytest.mark.inprocess
async def test_every_admin_route_is_403_for_non_admins(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    routes = admin_routes(running)
    assert len(routes) >= 8
    for method, path in routes:
        r = await browser.client.request(
            method, path, headers=csrf_headers(browser), json={"reason": "x"}, data=None
        )
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["error"] == "forbidden"
    # And no way in without signing in at all (the page sends you to sign in).
    for method, path in routes:
        status = (await running.client().request(method, path, headers=JSON)).status_code
        assert status in ((303, 401) if path == "/admin" else (401,)), (method, path, status)


def test_promote_demote_and_unknown_user(running: RunningApp) -> None:
    browser, _ = make_admin(running)
    assert browser.get("/api/auth/me", headers=JSON).json()["roles"] == ["admin", "user"]
    assert cli(running, "users", "demote", SANDBOX_USERS["alex"]).returncode == 0
    assert browser.get("/api/admin/users", headers=JSON).status_code == 403
    missing = cli(running, "users", "promote", "999")
    assert missing.returncode == 1 and "no user" in missing.stderr
    assert (
        rows(
            running.db_path,
            "SELECT count(*) FROM audit_events WHERE event_type='user.role_changed'",
        )[0][0]
        == 2
    )


def test_block_stops_sessions_at_once_and_sign_in(running: RunningApp) -> None:
    admin, admin_id = make_admin(running)
    victim, victim_id = sign_in(running, SANDBOX_USERS["olena"])
    second, _ = sign_in(running, SANDBOX_USERS["olena"])
    listing = admin.get("/api/admin/users", params={"q": "олена"}, headers=JSON).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == victim_id

    r = admin.post(
        f"/api/admin/users/{victim_id}/block", headers=csrf_headers(admin), json={"reason": "spam"}
    )
    assert r.status_code == 200 and r.json()["blocked"] is True
    for b in (victim, second):
        assert b.get("/api/auth/me", headers=JSON).status_code == 401
    again = victim.sign_in(SANDBOX_USERS["olena"])
    assert again.headers["location"] == "/?error=account_blocked"
    assert "blocked by an administrator" in victim.get("/?error=account_blocked").text
    blocked = rows(
        running.db_path, "SELECT details FROM audit_events WHERE event_type='user.blocked'"
    )
    assert '"reason": "spam"' in blocked[0][0] and admin_id in blocked[0][0]

    stats = admin.get("/api/admin/security/stats", headers=JSON).json()
    assert stats["users"] == 2 and stats["blocked_users"] == 1
    assert stats["failed_signins_24h"] == 1 and stats["active_sessions"] == 1

    assert (
        admin.post(f"/api/admin/users/{victim_id}/unblock", headers=csrf_headers(admin)).json()[
            "blocked"
        ]
        is False
    )
    assert victim.sign_in(SANDBOX_USERS["olena"]).headers["location"] == "/"


def test_admin_cannot_block_self_or_ghosts(running: RunningApp) -> None:
    admin, admin_id = make_admin(running)
    me = admin.post(
        f"/api/admin/users/{admin_id}/block", headers=csrf_headers(admin), json={"reason": "oops"}
    )
    assert me.status_code == 409 and me.json()["error"] == "cannot_block_self"
    ghost = admin.post(
        "/api/admin/users/nope/block", headers=csrf_headers(admin), json={"reason": "x"}
    )
    assert ghost.status_code == 404
    empty = admin.post(
        "/api/admin/users/nope/block", headers=csrf_headers(admin), json={"reason": ""}
    )
    assert empty.status_code == 422


def test_admin_logs_filter_by_user(running: RunningApp) -> None:
    admin, _ = make_admin(running)
    _, olena_id = sign_in(running, SANDBOX_USERS["olena"])
    items = admin.get(
        "/api/admin/security/logs", params={"user_id": olena_id}, headers=JSON
    ).json()["items"]
    assert items and all(e["user_id"] == olena_id for e in items)


def test_admin_page_blocks_a_user(running: RunningApp) -> None:
    admin, _ = make_admin(running)
    victim, victim_id = sign_in(running, SANDBOX_USERS["html"])
    page = admin.get("/admin")
    assert page.status_code == 200 and "&lt;script&gt;" in page.text
    assert "<script>alert" not in page.text
    csrf = admin.client.cookies["csrf_token"]
    done = admin.post(
        f"/admin/users/{victim_id}/block", data={"csrf_token": csrf, "reason": "abuse"}
    )
    assert done.headers["location"] == "/admin?notice=blocked"
    assert victim.get("/api/auth/me", headers=JSON).status_code == 401
    assert "Blocked" in admin.get("/admin").text
    assert (
        admin.post(f"/admin/users/{victim_id}/unblock", data={"csrf_token": csrf}).headers[
            "location"
        ]
        == "/admin?notice=unblocked"
    )
    # Non-admins get no admin page.
    other, _ = sign_in(running, SANDBOX_USERS["olena"])
    assert other.get("/admin").status_code in (303, 403)


@pytest.mark.parametrize(
    "path", ["/api/admin/users", "/api/admin/security/logs", "/api/admin/security/stats"]
)
@pytest.mark.inprocess
async def test_admin_reads_need_admin(inprocess: InProcessApp, path: str) -> None:
    user, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["noemail"])
    assert (await user.get(path, headers=JSON)).status_code == 403
