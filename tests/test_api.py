from __future__ import annotations

from pathlib import Path

import httpx

from .conftest import SANDBOX_USERS, AppFactory, RunningApp
from .upwork_helpers import sign_in


def test_healthz_and_readyz(running: RunningApp) -> None:
    assert httpx.get(f"{running.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{running.url}/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


def test_readyz_503_when_database_unreachable(app_factory: AppFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    app = app_factory(database_url=f"sqlite:///{blocker}/db.sqlite")
    r = httpx.get(f"{app.url}/readyz")
    assert r.status_code == 503 and r.json()["database"] == "unreachable"
    # Sign-in against a broken database: a clear error, never a 500 page with a traceback.
    start = httpx.get(f"{app.url}/api/auth/upwork/authorize")
    assert start.status_code == 503 and start.json()["error"] == "service_unavailable"
    assert "Traceback" not in start.text


def test_openapi_and_docs(running: RunningApp) -> None:
    spec = httpx.get(f"{running.url}/openapi.json").json()
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
    assert httpx.get(f"{running.url}/docs").status_code == 200


def test_jwks(running: RunningApp) -> None:
    keys = httpx.get(f"{running.url}/.well-known/jwks.json").json()["keys"]
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


def test_security_headers(running: RunningApp) -> None:
    r = httpx.get(f"{running.url}/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # plain http
    auth = httpx.get(f"{running.url}/api/auth/upwork/authorize")
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
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    anonymous = running.browser()
    answers = {
        path: client.get(path)
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


def test_not_found_and_bad_input_are_json(running: RunningApp) -> None:
    r = httpx.get(f"{running.url}/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = httpx.get(f"{running.url}/api/auth/upwork/authorize", params={"redirect": "maybe"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_static_assets_served(running: RunningApp) -> None:
    assert httpx.get(f"{running.url}/static/app.css").status_code == 200
    assert httpx.get(f"{running.url}/static/app.js").status_code == 200


def test_https_base_url_sets_secure_cookies_and_hsts(app_factory: AppFactory) -> None:
    app = app_factory(
        app_base_url="https://assistant.example.com",
        upwork_client_id="cid",
        upwork_client_secret="cs",
    )
    r = httpx.get(f"{app.url}/api/auth/upwork/authorize")
    assert "Secure" in r.headers["set-cookie"]
    assert "max-age" in r.headers["strict-transport-security"]
    url = r.json()["authorization_url"]
    assert url.startswith("https://www.upwork.com/ab/account-security/oauth2/authorize?")
    callback = "https%3A%2F%2Fassistant.example.com%2Fapi%2Fauth%2Fupwork%2Fcallback"
    assert f"redirect_uri={callback}" in url
