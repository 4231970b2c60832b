"""Rate limits, proxies, CORS, cookies, metrics, redirects, size limits, CSRF everywhere."""

from __future__ import annotations

import re

import pytest

from upwork_assistant.api.cookies import safe_next, set_session_cookies
from upwork_assistant.config import Settings
from upwork_assistant.db.models import UserSession
from upwork_assistant.db.types import utcnow
from upwork_assistant.services import Services

from .fixtures import SANDBOX_USERS, InProcessApp, InProcessFactory
from .helpers import rows
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in_inprocess

#: Nothing here needs a socket: the app is reached in-process (tests/fixtures.py), its
#: client address is 127.0.0.1 as over loopback.
pytestmark = pytest.mark.inprocess


async def test_sign_in_endpoints_are_rate_limited_per_ip(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(signin_rate_limit="3/minute")
    api = app.api()
    statuses = [(await api.get("/api/auth/upwork/authorize")).status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    r = await api.get("/api/auth/upwork/callback", params={"state": "x", "code": "y"})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert (await api.post("/api/auth/mfa", json={"code": "123456"})).status_code == 429
    # Audited once per window, not per request.
    assert len(audit_events(app.db_path, "rate_limit.hit")) == 1


async def test_api_is_rate_limited_per_user(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(api_rate_limit="5/minute")
    alex, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    olena, _ = await sign_in_inprocess(app, SANDBOX_USERS["olena"])
    # sign_in() used one request of the five already.
    codes = [(await alex.get("/api/auth/me", headers=JSON)).status_code for _ in range(6)]
    assert codes == [200] * 4 + [429, 429]
    assert (await olena.get("/api/auth/me", headers=JSON)).status_code == 200  # her own budget
    assert (await alex.get("/")).status_code == 200  # pages are not the API


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    inprocess_factory: InProcessFactory,
) -> None:
    plain = await inprocess_factory()
    browser = plain.browser()
    browser.client.headers["X-Forwarded-For"] = "203.0.113.9"
    await browser.sign_in(SANDBOX_USERS["alex"])
    assert rows(plain.db_path, "SELECT ip FROM sessions") == [("127.0.0.1",)]

    proxied = await inprocess_factory(trusted_proxies="127.0.0.1")
    browser = proxied.browser()
    browser.client.headers["X-Forwarded-For"] = "203.0.113.9"
    await browser.sign_in(SANDBOX_USERS["alex"])
    assert rows(proxied.db_path, "SELECT ip FROM sessions") == [("203.0.113.9",)]


async def test_cors_is_closed_by_default_and_follows_the_allow_list(
    inprocess_factory: InProcessFactory,
) -> None:
    closed = await inprocess_factory()
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    r = await closed.client().options("/api/auth/me", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    open_ = await inprocess_factory(cors_origins="https://app.example.com")
    ok = await open_.client().options("/api/auth/me", headers=preflight)
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    other = await open_.client().options(
        "/api/auth/me", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_cookie_names_over_https_and_http(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secure = Settings(data_dir=tmp_path, app_base_url="https://a.example.com")
    svc = Services.build(secure)
    from starlette.responses import Response

    out = Response()
    session = UserSession(id="s1", user_id="u1", refresh_token_hash="h", expires_at=utcnow())
    set_session_cookies(out, svc, session, "access", "refresh")
    cookies = [v.decode() for k, v in out.raw_headers if k == b"set-cookie"]
    assert any(
        c.startswith("__Host-access_token=") and "Secure" in c and "Path=/" in c for c in cookies
    )
    assert any(c.startswith("__Secure-refresh_token=") and "Path=/api/auth" in c for c in cookies)
    assert any(c.startswith("__Host-csrf_token=") and "HttpOnly" not in c for c in cookies)
    assert secure.cookies.flow_prefix == "__Secure-ua_oauth_"
    assert secure.cookies.mfa == "__Host-mfa_challenge"
    plain = Settings(data_dir=tmp_path)
    assert plain.cookies.access == "access_token" and plain.cookies.csrf == "csrf_token"


async def test_https_flow_cookie_is_secure_prefixed(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(
        app_base_url="https://assistant.example.com", upwork_client_id="c", upwork_client_secret="s"
    )
    cookie = (await app.client().get("/api/auth/upwork/authorize")).headers["set-cookie"]
    assert cookie.startswith("__Secure-ua_oauth_") and "Secure" in cookie


async def test_metrics_are_off_by_default_and_need_the_token(
    inprocess_factory: InProcessFactory,
) -> None:
    off = await inprocess_factory()
    assert (await off.client().get("/metrics")).status_code == 404
    on = await inprocess_factory(metrics_token="m" * 32)
    await sign_in_inprocess(on, SANDBOX_USERS["alex"])
    client = on.client()
    assert (await client.get("/metrics")).status_code == 401
    assert (
        await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    ).status_code == 401
    ok = await client.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"})
    assert ok.status_code == 200
    assert 'upwork_assistant_security_events_total{type="signin.succeeded"}' in ok.text
    assert "/metrics" not in (await client.get("/openapi.json")).text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/security", "/security"),
        ("/security?x=1#y", "/security?x=1#y"),
        ("//evil.example", None),
        ("/\\evil.example", None),
        ("https://evil.example", None),
        ("evil", None),
        ("/\x00x", None),
        ("", None),
        (None, None),
    ],
)
def test_return_paths_are_same_origin_only(given: str | None, expected: str | None) -> None:
    assert safe_next(given) == expected


@pytest.mark.parametrize(
    ("next_", "lands"),
    [("/security", "/security"), ("//evil.example/x", "/"), ("https://evil.example", "/")],
)
async def test_sign_in_returns_to_a_safe_next(
    inprocess: InProcessApp, next_: str, lands: str
) -> None:
    browser = inprocess.browser()
    r = await browser.get("/api/auth/upwork/authorize", params={"redirect": "true", "next": next_})
    page = await browser.get(r.headers["location"])
    callback = await browser.decide(page)
    assert (await browser.get(callback)).headers["location"] == lands


async def test_request_size_limit(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(max_request_bytes=2048)
    alex, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    big = await alex.post(
        "/api/security/mfa/verify",
        headers=csrf_headers(alex),
        content=b'{"code": "' + b"1" * 5000 + b'"}',
    )
    assert big.status_code == 413 and big.json()["error"] == "request_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 1000

    streamed = await app.client().post(
        "/api/auth/mfa", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_validation_errors_never_echo_input(inprocess: InProcessApp) -> None:
    alex, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    secret_like = "S3CR3T" * 20
    r = await alex.post(
        "/api/security/mfa/verify", headers=csrf_headers(alex), json={"code": secret_like}
    )
    assert r.status_code == 422 and secret_like not in r.text
    assert r.json()["error"] == "invalid_request"


UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: Unsafe routes not authenticated by the session cookie (their own protection applies).
NOT_SESSION = {
    "/api/auth/mfa",
    "/api/auth/refresh",
    # The MFA step with a passkey: no session yet, the MFA challenge cookie.
    "/api/security/mfa/webauthn/authenticate/options",
    "/api/security/mfa/webauthn/authenticate/verify",
}


async def test_every_cookie_authenticated_unsafe_route_needs_csrf(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    alex, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    ops = [
        (m.upper(), p)
        for p, o in running.app.openapi()["paths"].items()
        for m in o
        if m.upper() in UNSAFE and p not in NOT_SESSION
    ]
    pages = [
        ("POST", "/security/mfa/setup"),
        ("POST", "/security/mfa/verify"),
        ("POST", "/security/mfa/disable"),
        ("POST", "/security/mfa/backup-codes"),
        ("POST", "/security/mfa/confirm"),
        ("POST", "/security/mfa/remove-app"),
        ("POST", "/security/passkeys"),
        ("POST", "/security/passkeys/some-id/rename"),
        ("POST", "/security/passkeys/some-id/remove"),
        ("POST", "/security/sessions/some-id/revoke"),
        ("POST", "/security/sessions/revoke-others"),
        ("POST", "/admin/users/some-id/block"),
        ("POST", "/admin/users/some-id/unblock"),
    ]
    assert len(ops) >= 10
    for method, path in ops + pages:
        url = re.sub(r"\{[^}]+\}", "some-id", path)
        r = await alex.client.request(
            method, url, headers=JSON, json={"code": "123456", "reason": "x"}
        )
        assert r.status_code == 403 and r.json()["error"] == "csrf_failed", (method, url)
        wrong = await alex.client.request(method, url, headers={**JSON, "X-CSRF-Token": "nope"})
        assert wrong.status_code == 403, (method, url)
    # The session is untouched by all of that.
    assert (await alex.get("/api/auth/me", headers=JSON)).status_code == 200
    assert rows(running.db_path, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == [(1,)]


async def test_user_data_routes_show_only_your_own(inprocess: InProcessApp) -> None:
    alex, alex_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    olena, olena_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["olena"])
    for browser, me, other in ((alex, alex_id, olena_id), (olena, olena_id, alex_id)):
        assert (await browser.get("/api/auth/me", headers=JSON)).json()["id"] == me
        for path in (
            "/api/upwork/profile",
            "/api/upwork/connection",
            "/api/security/sessions",
            "/api/security/logs",
            "/api/security/mfa",
        ):
            body = (await browser.get(path, headers=JSON)).text
            assert other not in body, path
        profile = (await browser.get("/api/upwork/profile", headers=JSON)).json()
        expected = SANDBOX_USERS["alex"] if me == alex_id else SANDBOX_USERS["olena"]
        assert profile["upwork_id"] == expected
    # Another user's session id in your request: 404, and nothing happens to it.
    alex_session = (await alex.get("/api/security/sessions", headers=JSON)).json()[0]["id"]
    r = await olena.client.delete(
        f"/api/security/sessions/{alex_session}", headers=csrf_headers(olena)
    )
    assert r.status_code == 404
    assert (await alex.get("/api/auth/me", headers=JSON)).status_code == 200
