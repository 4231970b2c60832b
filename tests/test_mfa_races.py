"""MFA under concurrency (issue 13, item 3): a code is accepted at most once however many
requests race, and parallel wrong guesses cannot all slip past the lockout. The requests are
fired at once from threads, each over its own HTTP connection; the suite's PostgreSQL run
(READ COMMITTED, many connections) is where a missing lock shows."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from upwork_assistant.config import Settings

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser, count
from .test_admin import make_admin
from .test_mfa import code_at, enable_mfa, sign_out, start_mfa_sign_in
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in


def fire_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call in its own thread, all released by one barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def mfa_challenges(running: RunningApp, n: int) -> tuple[list[Browser], str, list[str]]:
    """Olena with MFA on and ``n`` browsers, each waiting at its own sign-in's code step."""
    browser, _ = sign_in(running, SANDBOX_USERS["olena"])
    secret, backup = enable_mfa(browser)
    sign_out(browser)
    browsers = [running.browser() for _ in range(n)]
    for b in browsers:
        start_mfa_sign_in(b, SANDBOX_USERS["olena"])
    return browsers, secret, backup


def submit_json(browser: Browser, code: str) -> Callable[[], httpx.Response]:
    return lambda: browser.post("/api/auth/mfa", json={"code": code}, headers=JSON)


def outcomes(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(
        "ok" if r.status_code == 200 else f"{r.status_code} {r.json()['error']}" for r in responses
    )


def test_one_totp_code_in_racing_challenges_signs_in_once(running: RunningApp) -> None:
    browsers, secret, _ = mfa_challenges(running, 8)
    code = code_at(secret, 1)  # the next step: enabling MFA used the current one
    result = outcomes(fire_at_once([submit_json(b, code) for b in browsers]))
    assert result == Counter({"ok": 1, "400 mfa_code_reused": 7}), result
    assert len(audit_events(running.db_path, "mfa.code_reused")) == 7
    assert count(running.db_path, "mfa_failures") == 0  # a replay is not a guess


def test_one_backup_code_in_racing_challenges_is_spent_once(running: RunningApp) -> None:
    browsers, _, backup = mfa_challenges(running, 8)
    result = outcomes(fire_at_once([submit_json(b, backup[0]) for b in browsers]))
    assert result["ok"] == 1, result
    # The losers presented a spent code: wrong guesses, so the fifth of them locks MFA.
    assert set(result) <= {"ok", "400 mfa_invalid_code", "429 mfa_locked"}, result
    assert len(audit_events(running.db_path, "mfa.backup_code_used")) == 1
    assert count(running.db_path, "sessions") == 2  # the enabling one (signed out) + 1


def test_parallel_wrong_guesses_stop_at_the_lockout(running: RunningApp) -> None:
    browsers, secret, _ = mfa_challenges(running, 1)
    challenge = browsers[0].client.cookies["mfa_challenge"]
    valid = {code_at(secret, d) for d in (-1, 0, 1, 2)}
    wrong = [f"{n:06d}" for n in range(100000, 100100) if f"{n:06d}" not in valid][:20]
    # Twenty clients holding the same challenge, each on its own connection.
    clients = [running.browser() for _ in wrong]
    for c in clients:
        c.client.cookies.set("mfa_challenge", challenge)
    result = outcomes(
        fire_at_once([submit_json(c, w) for c, w in zip(clients, wrong, strict=True)])
    )
    # Counting and checking happen under one lock: four wrong codes are refused as such,
    # the fifth locks MFA, and the other fifteen (the 6th onwards) are refused unchecked.
    assert result == Counter({"400 mfa_invalid_code": 4, "429 mfa_locked": 16}), result
    assert count(running.db_path, "mfa_failures") == 5
    assert len(audit_events(running.db_path, "mfa.failed")) == 5
    assert len(audit_events(running.db_path, "mfa.locked")) == 1


def test_parallel_wrong_codes_on_disable_stop_at_the_lockout(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    secret, _ = enable_mfa(browser)
    valid = {code_at(secret, d) for d in (-1, 0, 1, 2)}
    wrong = [f"{n:06d}" for n in range(200000, 200100) if f"{n:06d}" not in valid][:20]
    headers = {**JSON, "X-CSRF-Token": browser.client.cookies["csrf_token"]}
    clients = [running.browser() for _ in wrong]
    for c in clients:
        c.client.cookies.update(browser.client.cookies)

    def disable(c: Browser, code: str) -> Callable[[], httpx.Response]:
        return lambda: c.post("/api/security/mfa/disable", json={"code": code}, headers=headers)

    result = outcomes(fire_at_once([disable(c, w) for c, w in zip(clients, wrong, strict=True)]))
    assert result == Counter({"400 mfa_invalid_code": 4, "429 mfa_locked": 16}), result
    assert count(running.db_path, "mfa_failures") == 5
    assert browser.get("/api/auth/me", headers=JSON).json()["mfa_enabled"] is True


# ----- item 14: sessions end when MFA changes; admins need MFA -----------------------------


def signed_in(browser: Browser) -> bool:
    return browser.get("/api/auth/me", headers=JSON).status_code == 200


def second_sign_in(running: RunningApp, backup_code: str) -> Browser:
    """Olena (MFA on) signs in on another device with a backup code."""
    other = running.browser()
    start_mfa_sign_in(other, SANDBOX_USERS["olena"])
    assert other.post("/api/auth/mfa", data={"code": backup_code}).headers["location"] == "/"
    return other


def test_mfa_changes_can_sign_out_every_other_session(running: RunningApp) -> None:
    main, _ = sign_in(running, SANDBOX_USERS["olena"])
    others = [sign_in(running, SANDBOX_USERS["olena"])[0] for _ in range(2)]
    setup = main.post("/api/security/mfa/setup", headers=csrf_headers(main)).json()
    on = main.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(main),
        json={"code": code_at(setup["secret"]), "revoke_other_sessions": True},
    )
    assert on.status_code == 200 and on.json()["revoked_sessions"] == 2
    backup = on.json()["backup_codes"]
    assert signed_in(main) and not any(signed_in(b) for b in others)
    revoked = audit_events(running.db_path, "session.revoked")
    assert [e["reason"] for e in revoked] == ["mfa_enabled", "mfa_enabled"]

    # Without the flag nothing else ends.
    other = second_sign_in(running, backup[0])
    regen = main.post(
        "/api/security/mfa/backup-codes", headers=csrf_headers(main), json={"code": backup[1]}
    )
    assert regen.status_code == 200 and regen.json()["revoked_sessions"] == 0
    assert signed_in(other)
    fresh = regen.json()["backup_codes"]

    regen = main.post(
        "/api/security/mfa/backup-codes",
        headers=csrf_headers(main),
        json={"code": fresh[0], "revoke_other_sessions": True},
    )
    assert regen.status_code == 200 and regen.json()["revoked_sessions"] == 1
    assert signed_in(main) and not signed_in(other)
    fresh = regen.json()["backup_codes"]

    other = second_sign_in(running, fresh[0])
    off = main.post(
        "/api/security/mfa/disable",
        headers=csrf_headers(main),
        json={"code": fresh[1], "revoke_other_sessions": True},
    )
    assert off.json() == {"mfa_enabled": False, "revoked_sessions": 1}
    assert signed_in(main) and not signed_in(other)
    reasons = [e["reason"] for e in audit_events(running.db_path, "session.revoked")]
    assert reasons.count("mfa_backup_codes") == 1 and reasons.count("mfa_disabled") == 1
    assert count(running.db_path, "sessions") == 5  # main, two others, two re-sign-ins


def test_security_page_offers_signing_out_other_sessions(running: RunningApp) -> None:
    main, _ = sign_in(running, SANDBOX_USERS["olena"])
    csrf = main.client.cookies["csrf_token"]
    _, backup = enable_mfa(main)
    page = main.get("/security").text
    # New codes, turn off, and (the session has just proven a factor) add a passkey.
    for form in ("regen", "disable", "passkey"):
        assert f'id="{form}-revoke-others" name="revoke_other_sessions"' in page
    assert "Sign out my other sessions" in page
    other = second_sign_in(running, backup[0])
    wrong = main.post(
        "/security/mfa/disable",
        data={"csrf_token": csrf, "code": "abcde-fghij", "revoke_other_sessions": "yes"},
    )
    assert wrong.headers["location"].startswith("/security?error=")
    assert signed_in(other)  # a refused change signs nobody out
    off = main.post(
        "/security/mfa/disable",
        data={"csrf_token": csrf, "code": backup[1], "revoke_other_sessions": "yes"},
    )
    assert off.headers["location"] == "/security?notice=mfa_disabled_others_revoked"
    assert signed_in(main) and not signed_in(other)
    setup_page = main.post("/security/mfa/setup", data={"csrf_token": csrf}).text
    assert 'id="confirm-revoke-others"' in setup_page
    uk = main.get(
        "/security?notice=mfa_disabled_others_revoked", headers={"Accept-Language": "uk"}
    ).text
    assert "Двофакторний вхід вимкнено, а інші ваші сеанси завершено." in uk  # noqa: RUF001


def test_admins_need_mfa_when_admin_require_mfa_is_on(app_factory: AppFactory) -> None:
    app = app_factory(admin_require_mfa=True)
    browser, _ = make_admin(app)
    users = browser.get("/api/admin/users", headers=JSON)
    assert users.status_code == 403 and users.json()["error"] == "forbidden"
    block = browser.post(
        "/api/admin/users/some-id/block", headers=csrf_headers(browser), json={"reason": "x"}
    )
    assert block.status_code == 403
    page = browser.get("/admin")
    assert page.status_code == 303
    assert page.headers["location"] == "/security?error=admin_mfa_required"
    assert "need two-factor sign-in" in browser.get(page.headers["location"]).text
    enable_mfa(browser)
    assert browser.get("/api/admin/users", headers=JSON).status_code == 200
    assert browser.get("/admin").status_code == 200


def test_admin_require_mfa_defaults_to_production_only(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path / 'x.db'}"}
    assert Settings(**base).admin_mfa_required is False
    assert Settings(**base, app_env="production").admin_mfa_required is True
    assert (
        Settings(**base, app_env="production", admin_require_mfa=False).admin_mfa_required is False
    )
    assert Settings(**base, admin_require_mfa=True).admin_mfa_required is True
