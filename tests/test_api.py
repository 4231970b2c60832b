from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .fixtures import SANDBOX_USERS, InProcessApp, InProcessFactory
from .upwork_helpers import sign_in_inprocess

#: Nothing here needs a socket: the app is reached in-process (tests/fixtures.py).
pytestmark = pytest.mark.inprocess


async def test_healthz_and_readyz(asgi_client: httpx.AsyncClient) -> None:
    assert (await asgi_client.get("/healthz")).json() == {"status": "ok"}
    r = await asgi_client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


async def test_readyz_503_when_database_unreachable(
    inprocess_factory: InProcessFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    app = await inprocess_factory(database_url=f"sqlite:///{blocker}/db.sqlite")
    client = app.client()
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["database"] == "unreachable"
    # Sign-in against a broken database: a clear error, never a 500 page with a traceback.
    start = await client.get("/api/auth/upwork/authorize")
    assert start.status_code == 503 and start.json()["error"] == "service_unavailable"
    assert "Traceback" not in start.text


async def test_openapi_and_docs(asgi_client: httpx.AsyncClient) -> None:
    spec = (await asgi_client.get("/openapi.json")).json()
    for path in [
        "/api/auth/upwork/authorize",
        "/api/auth/upwork/callback",
        "/api/auth/me",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
    ]:
        assert path in spec["paths"], path
    assert (await asgi_client.get("/docs")).status_code == 200


async def test_jwks(asgi_client: httpx.AsyncClient) -> None:
    keys = (await asgi_client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and keys[0]["alg"] == "EdDSA"
    assert "d" not in keys[0]  # public part only


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in directives, f"{name} twice"
        directives[name] = sources
    return directives


async def test_security_headers(inprocess: InProcessApp) -> None:
    running = inprocess
    client = running.client()
    r = await client.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # plain http
    auth = await client.get("/api/auth/upwork/authorize")
    assert auth.headers["cache-control"] == "no-store"

    # The whole CSP, every directive, on pages, the API, errors and static files alike.
    authorize = httpx.URL(running.settings.authorize_url)
    upwork_origin = f"{authorize.scheme}://{authorize.netloc.decode()}"
    expected = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        # Portraits: Upwork's image hosts, and the sandbox that serves its users' portraits.
        "img-src": [
            "'self'",
            "data:",
            "https://www.upwork.com",
            "https://odesk-prod-portraits.s3.amazonaws.com",
            upwork_origin,
        ],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'", upwork_origin],
    }
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    anonymous = running.browser()
    answers = {
        path: await client.get(path)
        for client, paths in (
            (anonymous, ["/", "/mfa", "/nope", "/api/auth/me", "/api/auth/upwork/authorize"]),
            (anonymous, ["/api/auth/upwork/callback", "/healthz", "/openapi.json", "/docs"]),
            (anonymous, ["/static/app.css", "/static/app.js", "/.well-known/jwks.json"]),
            (browser, ["/", "/security", "/account", "/admin", "/api/security/sessions"]),
            (browser, ["/api/upwork/profile", "/api/security/logs"]),
        )
        for path in paths
    }
    for path, answer in answers.items():
        csp = answer.headers.get("content-security-policy")
        assert csp, path
        directives = csp_directives(csp)
        assert directives == expected, (path, csp)
        for sources in directives.values():
            for source in sources:
                assert "*" not in source and source not in ("http:", "https:"), (path, source)
                assert not source.startswith("'unsafe-"), (path, source)


async def test_not_found_and_bad_input_are_json(asgi_client: httpx.AsyncClient) -> None:
    r = await asgi_client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await asgi_client.get("/api/auth/upwork/authorize", params={"redirect": "maybe"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


async def test_static_assets_served(asgi_client: httpx.AsyncClient) -> None:
    assert (await asgi_client.get("/static/app.css")).status_code == 200
    assert (await asgi_client.get("/static/app.js")).status_code == 200


async def test_https_base_url_sets_secure_cookies_and_hsts(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(
        app_base_url="https://assistant.example.com",
        upwork_client_id="cid",
        upwork_client_secret="cs",
    )
    r = await app.client().get("/api/auth/upwork/authorize")
    assert "Secure" in r.headers["set-cookie"]
    assert "max-age" in r.headers["strict-transport-security"]
    url = r.json()["authorization_url"]
    assert url.startswith("https://www.upwork.com/ab/account-security/oauth2/authorize?")
    callback = "https%3A%2F%2Fassistant.example.com%2Fapi%2Fauth%2Fupwork%2Fcallback"
    assert f"redirect_uri={callback}" in url
