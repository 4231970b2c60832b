"""The whole "Sign in with Upwork" flow through a real server and the sandbox's consent page."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import markupsafe
import pytest

from upwork_assistant.security.aad import upwork_token_aad
from upwork_assistant.security.keys import KeyRing, Sealed

from .fixtures import SANDBOX_USERS, RunningApp
from .helpers import count, rows


def test_sign_in_page_has_button_and_sandbox_banner(running: RunningApp) -> None:
    page = running.browser().get("/")
    assert page.status_code == 200
    assert "Sign in with Upwork" in page.text
    assert "Sandbox mode" in page.text
    assert 'href="/api/auth/upwork/authorize?redirect=true"' in page.text


def test_full_sign_in_creates_account_and_shows_dashboard(
    running: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    browser = running.browser()
    consent = browser.start_sign_in()
    assert "Allow" in consent.text and "Deny" in consent.text
    callback = browser.decide(consent, SANDBOX_USERS["alex"])
    parsed = urlsplit(callback)
    assert parsed.path == "/api/auth/upwork/callback"
    query = parse_qs(parsed.query)
    code, state = query["code"][0], query["state"][0]

    done = browser.get(callback)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert done.headers["referrer-policy"] == "no-referrer"
    set_cookies = done.headers.get_list("set-cookie")
    access_cookie = next(c for c in set_cookies if c.startswith("access_token="))
    refresh_cookie = next(c for c in set_cookies if c.startswith("refresh_token="))
    assert "HttpOnly" in access_cookie and "SameSite=lax" in access_cookie
    assert "Path=/api/auth" in refresh_cookie and "HttpOnly" in refresh_cookie
    assert "Secure" not in access_cookie  # plain http base URL

    dashboard = browser.get("/")
    assert "Alex M." in dashboard.text  # Upwork sends "first name + last initial"
    # The sandbox's default key has Common Entities only, like a fresh one: no email.
    assert "Not granted by this installation" in dashboard.text
    assert SANDBOX_USERS["alex"] in dashboard.text
    assert "Last synced" in dashboard.text and "Sign out" in dashboard.text

    me = browser.get("/api/auth/me", headers={"Accept": "application/json"}).json()
    assert set(me) == {
        "id",
        "upwork_id",
        "name",
        "email",
        "mfa_enabled",
        "roles",
        "profile_synced_at",
    }
    assert me["upwork_id"] == SANDBOX_USERS["alex"]
    assert me["roles"] == ["user"] and me["mfa_enabled"] is False
    assert me["profile_synced_at"]

    assert count(running.db_path, "users") == 1
    assert count(running.db_path, "sessions") == 1
    events = [r[0] for r in rows(running.db_path, "SELECT event_type FROM audit_events")]
    assert {"account.created", "session.created", "signin.succeeded"} <= set(events)

    # The code and state never reach a log line; neither do Upwork's tokens.
    sandbox = running.sandbox_state
    upwork_tokens = list(sandbox.access_tokens) + list(sandbox.refresh_tokens)
    assert upwork_tokens
    for secret in [code, state, *upwork_tokens]:
        assert secret not in caplog.text
    assert "/api/auth/upwork/callback?[redacted]" in caplog.text


def test_upwork_tokens_are_encrypted_at_rest(running: RunningApp) -> None:
    running.browser().sign_in(SANDBOX_USERS["olena"])
    sandbox = running.sandbox_state
    (access,) = list(sandbox.access_tokens)
    (refresh,) = list(sandbox.refresh_tokens)
    raw = running.db_path.read_bytes()
    assert access.encode() not in raw and refresh.encode() not in raw
    (user_id, kid, ct, rkid, rct, expires) = rows(
        running.db_path,
        "SELECT user_id, access_token_kid, access_token_ct, refresh_token_kid, "
        "refresh_token_ct, access_expires_at FROM upwork_connections",
    )[0]
    ring = KeyRing(running.settings.secrets.token_encryption_keys)
    assert kid == ring.primary_id and rkid == ring.primary_id
    assert ring.decrypt(Sealed(kid, ct), aad=upwork_token_aad(user_id, "access")) == access
    assert ring.decrypt(Sealed(rkid, rct), aad=upwork_token_aad(user_id, "refresh")) == refresh
    assert expires is not None


@pytest.mark.parametrize("who", ["olena", "noemail", "html"])
def test_awkward_sandbox_users(running: RunningApp, who: str) -> None:
    running.faults(scopes=["common-entities", "user-email"])  # a key that may read email
    browser = running.browser()
    assert browser.sign_in(SANDBOX_USERS[who]).headers["location"] == "/"
    page = browser.get("/").text
    me = browser.get("/api/auth/me", headers={"Accept": "application/json"}).json()
    if who == "olena":
        assert me["name"] == "Олена К." and "Олена К." in page  # noqa: RUF001
    if who == "noemail":
        assert me["email"] is None and "Not shared by Upwork" in page
    if who == "html":
        assert me["name"].startswith('<script>alert("name")</script>')
        assert len(me["name"]) <= 300
        assert "<script>alert" not in page and "<b>Bold</b>" not in page
        assert str(markupsafe.escape(me["name"][:40])) in page


def test_second_sign_in_updates_the_same_account(running: RunningApp) -> None:
    running.faults(scopes=["all"])
    first = running.browser()
    first.sign_in(SANDBOX_USERS["alex"])
    me1 = first.get("/api/auth/me", headers={"Accept": "application/json"}).json()

    running.faults(user_patch={"name": "Alex Morgan-Smith", "email": "alex@new.example.com"})
    second = running.browser()
    second.sign_in(SANDBOX_USERS["alex"])
    me2 = second.get("/api/auth/me", headers={"Accept": "application/json"}).json()

    assert me2["id"] == me1["id"]
    assert me2["name"] == "Alex Morgan-Smith" and me2["email"] == "alex@new.example.com"
    assert me2["profile_synced_at"] > me1["profile_synced_at"]
    assert count(running.db_path, "users") == 1
    assert count(running.db_path, "upwork_connections") == 1
    assert count(running.db_path, "sessions") == 2
    details = rows(
        running.db_path, "SELECT details FROM audit_events WHERE event_type='profile.updated'"
    )
    assert len(details) == 1 and "name" in details[0][0] and "email" in details[0][0]


def test_authorize_json_returns_fresh_state_and_pkce(running: RunningApp) -> None:
    api = running.api()
    seen = set()
    for _ in range(3):
        r = api.get("/api/auth/upwork/authorize")
        assert r.status_code == 200
        url = r.json()["authorization_url"]
        q = parse_qs(urlsplit(url).query)
        assert q["response_type"] == ["code"]
        assert q["client_id"] == [running.settings.oauth_client_id]
        assert q["redirect_uri"] == [f"{running.url}/api/auth/upwork/callback"]
        assert q["code_challenge_method"] == ["S256"]
        assert len(q["state"][0]) >= 22  # >= 128 bits in URL-safe base64
        seen.add((q["state"][0], q["code_challenge"][0]))
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("ua_oauth_") and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie and "Path=/api/auth/upwork/callback" in cookie
        assert "Max-Age=600" in cookie
        # The cookie holds an opaque signed id: neither the state nor any verifier.
        assert q["state"][0] not in cookie
    assert len(seen) == 3
    verifiers = [r[0] for r in rows(running.db_path, "SELECT code_verifier FROM oauth_flows")]
    assert len(set(verifiers)) == 3
    api.close()


def test_two_tabs_signing_in_at_once_both_work(running: RunningApp) -> None:
    browser = running.browser()
    consent_a = browser.start_sign_in()
    consent_b = browser.start_sign_in()
    callback_a = browser.decide(consent_a, SANDBOX_USERS["alex"])
    callback_b = browser.decide(consent_b, SANDBOX_USERS["alex"])
    assert browser.get(callback_b).headers["location"] == "/"
    assert browser.get(callback_a).headers["location"] == "/"


def test_api_client_callback_gets_json_and_bearer_works(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in(), SANDBOX_USERS["olena"])
    r = browser.get(callback, headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["upwork_id"] == SANDBOX_USERS["olena"] and body["created"] is True
    token = body["access_token"]

    me = httpx.get(f"{running.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["name"] == "Олена К."  # noqa: RUF001

    # The JWT verifies against the published JWKS and carries the documented claims.
    jwks = httpx.get(f"{running.url}/.well-known/jwks.json").json()
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    claims = jwt.decode(
        token, key.key, algorithms=["EdDSA"], audience="upwork-assistant", issuer=running.url
    )
    assert set(claims) == {"sub", "sid", "iat", "exp", "iss", "aud", "jti"}
    assert claims["exp"] - claims["iat"] == 900
    assert claims["sub"] == body["user"]["id"]


def test_me_without_session_is_401(running: RunningApp) -> None:
    r = httpx.get(f"{running.url}/api/auth/me")
    assert r.status_code == 401 and r.json()["error"] == "not_authenticated"
    bad = httpx.get(f"{running.url}/api/auth/me", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_refresh_rotates_and_needs_csrf(running: RunningApp) -> None:
    browser = running.browser()
    browser.sign_in(SANDBOX_USERS["alex"])
    old_refresh = browser.client.cookies.get("refresh_token", path="/api/auth")
    csrf = browser.client.cookies.get("csrf_token")
    json_accept = {"Accept": "application/json"}

    no_csrf = browser.post("/api/auth/refresh", headers=json_accept)
    assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf_failed"
    wrong = browser.post("/api/auth/refresh", headers={**json_accept, "X-CSRF-Token": "x"})
    assert wrong.status_code == 403

    ok = browser.post("/api/auth/refresh", headers={**json_accept, "X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text
    new_refresh = browser.client.cookies.get("refresh_token", path="/api/auth")
    assert new_refresh and new_refresh != old_refresh
    assert ok.json()["access_token"]
    hashes = rows(running.db_path, "SELECT refresh_token_hash FROM sessions")
    assert old_refresh not in str(hashes) and new_refresh not in str(hashes)

    # The rotated-away token no longer works from another client (see test_sessions.py
    # for the grace window and reuse detection).
    stale = httpx.post(
        f"{running.url}/api/auth/refresh",
        headers={"X-CSRF-Token": csrf, "User-Agent": "another-client/1.0"},
        cookies={"refresh_token": old_refresh},
    )
    assert stale.status_code == 401 and stale.json()["error"] == "session_expired"


def test_logout_needs_csrf_and_revokes_at_once(running: RunningApp) -> None:
    browser = running.browser()
    browser.sign_in(SANDBOX_USERS["alex"])
    access = browser.client.cookies.get("access_token")
    json_accept = {"Accept": "application/json"}

    forged = browser.post("/api/auth/logout", headers=json_accept)
    assert forged.status_code == 403 and forged.json()["error"] == "csrf_failed"
    assert browser.get("/api/auth/me", headers=json_accept).status_code == 200

    # The dashboard's Sign out button: a plain form with the CSRF token in a hidden field.
    page = browser.get("/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    out = browser.post("/api/auth/logout", data={"csrf_token": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/"
    assert "Sign in with Upwork" in browser.get("/").text

    # The old access token is refused on its very next use.
    r = httpx.get(f"{running.url}/api/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 401
    assert rows(running.db_path, "SELECT revoked_at IS NOT NULL FROM sessions") == [(1,)]


def test_bearer_requests_need_no_csrf(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    token = browser.get(callback, headers={"Accept": "application/json"}).json()["access_token"]
    r = httpx.post(f"{running.url}/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"signed_out": True}


def test_concurrent_first_sign_ins_make_one_account(running: RunningApp) -> None:
    import concurrent.futures

    callbacks = []
    browsers = [running.browser() for _ in range(4)]
    for b in browsers:
        callbacks.append(b.decide(b.start_sign_in(), SANDBOX_USERS["noemail"]))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda pair: pair[0].get(pair[1]), zip(browsers, callbacks, strict=True))
        )
    assert all(r.headers["location"] == "/" for r in results)
    assert count(running.db_path, "users") == 1
    assert count(running.db_path, "sessions") == 4
