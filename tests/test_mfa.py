"""Two-factor sign-in with real TOTP codes (pyotp) through the sandbox, in-process (the
app through httpx.ASGITransport). The sync helpers stay for the real-tier tests that
import them."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyotp
import pytest

from .fixtures import SANDBOX_USERS, InProcessApp
from .helpers import AsyncBrowser, Browser, count, rows
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in_inprocess

#: Nothing here needs a socket: the app is reached in-process (tests/fixtures.py).
pytestmark = pytest.mark.inprocess


def code_at(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def enable_mfa(browser: Browser) -> tuple[str, list[str]]:
    setup = browser.post("/api/security/mfa/setup", headers=csrf_headers(browser)).json()
    verify = browser.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(browser),
        json={"code": code_at(setup["secret"])},
    )
    assert verify.status_code == 200, verify.text
    return setup["secret"], verify.json()["backup_codes"]


def sign_out(browser: Browser) -> None:
    browser.post("/api/auth/logout", data={"csrf_token": browser.client.cookies["csrf_token"]})
    assert "access_token" not in browser.client.cookies


def start_mfa_sign_in(browser: Browser, upwork_id: str) -> None:
    r = browser.sign_in(upwork_id)
    assert r.status_code == 303 and r.headers["location"] == "/mfa"
    assert "mfa_challenge" in browser.client.cookies
    assert "access_token" not in browser.client.cookies


def submit(browser: Browser, code: str, *, as_json: bool = False) -> httpx.Response:
    if as_json:
        return browser.post("/api/auth/mfa", json={"code": code}, headers=JSON)
    return browser.post("/api/auth/mfa", data={"code": code})


async def enable_mfa_inprocess(browser: AsyncBrowser) -> tuple[str, list[str]]:
    """:func:`enable_mfa` for the in-process tier."""
    setup = (await browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))).json()
    verify = await browser.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(browser),
        json={"code": code_at(setup["secret"])},
    )
    assert verify.status_code == 200, verify.text
    return setup["secret"], verify.json()["backup_codes"]


async def sign_out_inprocess(browser: AsyncBrowser) -> None:
    """:func:`sign_out` for the in-process tier."""
    await browser.post(
        "/api/auth/logout", data={"csrf_token": browser.client.cookies["csrf_token"]}
    )
    assert "access_token" not in browser.client.cookies


async def start_mfa_sign_in_inprocess(browser: AsyncBrowser, upwork_id: str) -> None:
    """:func:`start_mfa_sign_in` for the in-process tier."""
    r = await browser.sign_in(upwork_id)
    assert r.status_code == 303 and r.headers["location"] == "/mfa"
    assert "mfa_challenge" in browser.client.cookies
    assert "access_token" not in browser.client.cookies


async def submit_inprocess(
    browser: AsyncBrowser, code: str, *, as_json: bool = False
) -> httpx.Response:
    """:func:`submit` for the in-process tier."""
    if as_json:
        return await browser.post("/api/auth/mfa", json={"code": code}, headers=JSON)
    return await browser.post("/api/auth/mfa", data={"code": code})


@pytest.fixture
async def mfa_user(inprocess: InProcessApp) -> tuple[AsyncBrowser, str, str, list[str]]:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    secret, backup = await enable_mfa_inprocess(browser)
    await sign_out_inprocess(browser)
    return browser, user_id, secret, backup


async def test_setup_gives_uri_qr_and_is_inactive_until_verified(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    setup = (await browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))).json()
    uri = urlsplit(setup["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert unquote(uri.path).endswith("Олена К.")  # noqa: RUF001 - the name as Upwork sends it
    assert parse_qs(uri.query)["issuer"] == ["Freelance Desk"]  # APP_NAME's default
    assert parse_qs(uri.query)["secret"] == [setup["secret"]]
    assert setup["qr_svg"].startswith("<svg") and "path" in setup["qr_svg"]
    assert (await browser.get("/api/auth/me", headers=JSON)).json()["mfa_enabled"] is False

    wrong = await browser.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(browser),
        json={"code": "000000" if code_at(setup["secret"]) != "000000" else "111111"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "mfa_invalid_code"
    ok = await browser.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(browser),
        json={"code": code_at(setup["secret"])},
    )
    codes = ok.json()["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c) for c in codes)
    assert (await browser.get("/api/auth/me", headers=JSON)).json()["mfa_enabled"] is True
    assert audit_events(running.db_path, "mfa.enabled")

    # At rest: the secret encrypted, the backup codes as argon2 hashes only.
    raw = running.db_path.read_bytes()
    assert setup["secret"].encode() not in raw
    assert all(c.replace("-", "").encode() not in raw for c in codes)
    hashes = rows(
        running.db_path, "SELECT code_hash FROM mfa_backup_codes WHERE user_id=?", user_id
    )
    assert len(hashes) == 10 and all(h[0].startswith("$argon2id$") for h in hashes)


async def test_full_mfa_sign_in_through_the_sandbox(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, user_id, secret, _ = mfa_user
    sessions_before = count(running.db_path, "sessions")
    tokens_before = rows(running.db_path, "SELECT access_token_ct FROM upwork_connections")
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    # Upwork's tokens are stored already; our session is not created yet.
    assert rows(running.db_path, "SELECT access_token_ct FROM upwork_connections") != tokens_before
    assert count(running.db_path, "sessions") == sessions_before
    page = await browser.get("/mfa")
    assert page.status_code == 200 and 'name="code"' in page.text
    assert (await browser.get("/api/auth/me", headers=JSON)).status_code == 401

    # the next step: the current one was used
    done = await submit_inprocess(browser, code_at(secret, 1))
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert "mfa_challenge" not in browser.client.cookies
    me = (await browser.get("/api/auth/me", headers=JSON)).json()
    assert me["id"] == user_id and me["mfa_enabled"] is True
    assert count(running.db_path, "sessions") == sessions_before + 1
    events = rows(
        running.db_path,
        "SELECT details FROM audit_events "
        "WHERE event_type='signin.succeeded' ORDER BY id DESC LIMIT 1",
    )
    assert "upwork+totp" in events[0][0]


async def test_mfa_sign_in_for_api_clients(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    browser, _, secret, _ = mfa_user
    callback = await browser.decide(await browser.start_sign_in(), SANDBOX_USERS["olena"])
    r = await browser.get(callback, headers=JSON)
    assert r.json() == {"mfa_required": True, "created": False}
    done = await submit_inprocess(browser, code_at(secret, 1), as_json=True)
    assert done.status_code == 200 and done.json()["access_token"]


async def test_totp_replay_is_refused(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    browser, _, secret, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    code = code_at(secret, 1)
    assert (await submit_inprocess(browser, code)).headers["location"] == "/"
    await sign_out_inprocess(browser)
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    again = await submit_inprocess(browser, code, as_json=True)
    assert again.status_code == 400 and again.json()["error"] == "mfa_code_reused"
    # The page says so too.
    page = await submit_inprocess(browser, code)
    assert page.headers["location"] == "/mfa?error=mfa_code_reused"
    assert "already been used" in (await browser.get("/mfa?error=mfa_code_reused")).text


async def test_old_step_code_is_refused(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    browser, _, secret, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    # 90 s old: outside the skew
    r = await submit_inprocess(browser, code_at(secret, -3), as_json=True)
    if r.status_code != 400 or r.json()["error"] != "mfa_invalid_code":
        # A collision with a valid step is possible (1 in 10^6 per step): tolerate it.
        assert code_at(secret, -3) in {code_at(secret, d) for d in (-1, 0, 1)}


async def test_backup_code_works_once(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, _, _, backup = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    assert (await submit_inprocess(browser, backup[0].upper().replace("-", " "))).headers[
        "location"
    ] == "/"
    assert audit_events(running.db_path, "mfa.backup_code_used")
    left = (await browser.get("/api/security/mfa", headers=JSON)).json()["backup_codes_left"]
    assert left == 9
    await sign_out_inprocess(browser)
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    again = await submit_inprocess(browser, backup[0], as_json=True)
    assert again.status_code == 400 and again.json()["error"] == "mfa_invalid_code"
    assert (await submit_inprocess(browser, backup[1])).headers["location"] == "/"


async def test_lockout_after_five_wrong_codes(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, _, secret, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    valid = {code_at(secret, d) for d in (-1, 0, 1, 2)}
    wrong = [
        c for c in ("123456", "234567", "345678", "456789", "567890", "678901") if c not in valid
    ][:5]
    statuses = [await submit_inprocess(browser, c, as_json=True) for c in wrong]
    assert [r.status_code for r in statuses[:4]] == [400] * 4
    assert statuses[4].status_code == 429 and statuses[4].json()["error"] == "mfa_locked"
    assert "15 minutes" in statuses[4].json()["message"]
    assert int(statuses[4].headers["retry-after"]) > 0
    assert len(audit_events(running.db_path, "mfa.locked")) == 1

    # A right code does not help while locked, even in a fresh sign-in.
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    locked = await submit_inprocess(browser, code_at(secret, 1), as_json=True)
    assert locked.status_code == 429 and locked.json()["error"] == "mfa_locked"
    assert 800 <= int(locked.headers["retry-after"]) <= 901
    assert len(audit_events(running.db_path, "mfa.locked")) == 1  # once, not per attempt


async def test_challenge_dies_after_five_failures(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, _, secret, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    # Reached through wrong codes over HTTP, as an attacker would, not set in SQL.
    valid = {code_at(secret, d) for d in (-1, 0, 1, 2)}
    wrong = [f"{n:06d}" for n in range(300000, 300010) if f"{n:06d}" not in valid][:5]
    answers = [await submit_inprocess(browser, c, as_json=True) for c in wrong]
    assert [r.json()["error"] for r in answers] == ["mfa_invalid_code"] * 4 + ["mfa_locked"]
    assert rows(running.db_path, "SELECT failures FROM mfa_challenges") == [(5,)]
    r = await submit_inprocess(browser, code_at(secret, 1), as_json=True)
    assert r.status_code == 400 and r.json()["error"] == "mfa_challenge_expired"
    assert (await browser.get("/api/auth/me", headers=JSON)).status_code == 401


@pytest.mark.parametrize("bad", ["12ab", "", "1234567", "x" * 65, "abcd-efgh-ij"])
async def test_malformed_codes_are_a_clear_400(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]], bad: str
) -> None:
    running = inprocess
    browser, _, _, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    r = await submit_inprocess(browser, bad, as_json=True)
    assert r.status_code == 400 and r.json()["error"] == "mfa_code_format"
    assert count(running.db_path, "mfa_failures") == 0  # not counted as a guess


async def test_bad_bodies(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    browser, _, _, _ = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    for kwargs in (
        {"content": b"{not json", "headers": {**JSON, "Content-Type": "application/json"}},
        {"json": {"nope": 1}, "headers": JSON},
        {"json": ["123456"], "headers": JSON},
    ):
        r = await browser.post("/api/auth/mfa", **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 400 and r.json()["error"] == "mfa_code_format"


async def test_missing_expired_and_tampered_challenge(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, _, secret, _ = mfa_user
    stranger = running.browser()
    r = await submit_inprocess(stranger, "123456", as_json=True)
    assert r.status_code == 400 and r.json()["error"] == "mfa_challenge_missing"
    page = await stranger.get("/mfa")
    assert page.status_code == 303 and page.headers["location"] == "/?error=mfa_challenge_missing"

    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    value = browser.client.cookies["mfa_challenge"]
    stranger.client.cookies.set("mfa_challenge", value[:-3] + "abc")
    assert (await submit_inprocess(stranger, code_at(secret, 1), as_json=True)).json()["error"] == (
        "mfa_challenge_missing"
    )

    rows(running.db_path, "UPDATE mfa_challenges SET expires_at='2000-01-01 00:00:00.000000'")
    r = await submit_inprocess(browser, code_at(secret, 1), as_json=True)
    assert r.status_code == 400 and r.json()["error"] == "mfa_challenge_expired"
    browser_form = await submit_inprocess(browser, code_at(secret, 1))
    assert browser_form.headers["location"] == "/?error=mfa_challenge_expired"


async def test_disable_and_regenerate(
    inprocess: InProcessApp, mfa_user: tuple[AsyncBrowser, str, str, list[str]]
) -> None:
    running = inprocess
    browser, _, secret, backup = mfa_user
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["olena"])
    await submit_inprocess(browser, code_at(secret, 1))

    regen = await browser.post(
        "/api/security/mfa/backup-codes", headers=csrf_headers(browser), json={"code": backup[0]}
    )
    assert regen.status_code == 200
    fresh = regen.json()["backup_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(backup)
    assert audit_events(running.db_path, "mfa.backup_codes_regenerated")
    bad = await browser.post(
        "/api/security/mfa/disable", headers=csrf_headers(browser), json={"code": backup[1]}
    )  # an old code: no longer valid
    assert bad.status_code == 400 and bad.json()["error"] == "mfa_invalid_code"

    off = await browser.post(
        "/api/security/mfa/disable", headers=csrf_headers(browser), json={"code": fresh[0]}
    )
    assert off.status_code == 200 and off.json() == {"mfa_enabled": False, "revoked_sessions": 0}
    assert audit_events(running.db_path, "mfa.disabled")
    assert count(running.db_path, "mfa_backup_codes") == 0
    again = await browser.post(
        "/api/security/mfa/disable", headers=csrf_headers(browser), json={"code": "123456"}
    )
    assert again.status_code == 409 and again.json()["error"] == "mfa_not_enabled"

    await sign_out_inprocess(browser)
    assert (await browser.sign_in(SANDBOX_USERS["olena"])).headers["location"] == "/"  # no MFA step


async def test_state_errors(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    r = await browser.post(
        "/api/security/mfa/verify", headers=csrf_headers(browser), json={"code": "123456"}
    )
    assert r.status_code == 409 and r.json()["error"] == "mfa_setup_missing"
    await enable_mfa_inprocess(browser)
    r = await browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))
    assert r.status_code == 409 and r.json()["error"] == "mfa_already_enabled"
    r = await browser.post(
        "/api/security/mfa/verify", headers=csrf_headers(browser), json={"code": "123456"}
    )
    assert r.status_code == 409 and r.json()["error"] == "mfa_already_enabled"
    r = await browser.post("/api/security/mfa/disable", headers=csrf_headers(browser), json={})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = await browser.post("/api/security/mfa/setup", headers=JSON)  # no CSRF token
    assert r.status_code == 403


async def test_security_pages_enable_flow(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    csrf = browser.client.cookies["csrf_token"]
    page = await browser.get("/security")
    assert "Set up two-factor sign-in" in page.text and "This device" in page.text
    setup = await browser.post("/security/mfa/setup", data={"csrf_token": csrf})
    assert setup.status_code == 200 and "<svg" in setup.text
    key = re.search(r'<code class="key">([A-Z2-7 ]+)</code>', setup.text)
    assert key
    secret = key.group(1).replace(" ", "")
    done = await browser.post(
        "/security/mfa/verify", data={"csrf_token": csrf, "code": code_at(secret)}
    )
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)
    assert len(codes) == 10
    assert 'download="backup-codes.txt"' in done.text
    assert "only time they are shown" in done.text
    # Shown once: the page no longer lists them.
    later = (await browser.get("/security")).text
    assert codes[0] not in later and "10 backup codes left" in later
    wrong = await browser.post("/security/mfa/disable", data={"csrf_token": csrf, "code": "abc"})
    assert wrong.headers["location"] == "/security?error=mfa_code_format"
    forged = await browser.post("/security/mfa/disable", data={"code": codes[0]})
    assert forged.status_code == 303 and "csrf_failed" in forged.headers["location"]
    off = await browser.post("/security/mfa/disable", data={"csrf_token": csrf, "code": codes[0]})
    assert off.headers["location"] == "/security?notice=mfa_disabled"
    assert "Two-factor sign-in is off." in (await browser.get("/security?notice=mfa_disabled")).text
