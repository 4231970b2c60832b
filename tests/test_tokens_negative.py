"""Our access tokens refuse every forgery; sessions end at their absolute limit; and other
details the security page promises."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import OKPAlgorithm

from .fixtures import SANDBOX_USERS, AppFactory, External, RunningApp
from .helpers import rows, serve
from .upwork_helpers import JSON, audit_events, sign_in, sqlite_time


def me_with(app: RunningApp, token: str) -> int:
    return httpx.get(
        f"{app.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
    ).status_code


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_and_stale_access_tokens_are_refused(running: RunningApp) -> None:
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    token = browser.client.cookies["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert me_with(running, token) == 200

    stranger = Ed25519PrivateKey.generate()

    def signed(**changes: object) -> str:
        return jwt.encode(
            {**claims, **changes}, stranger, algorithm="EdDSA", headers={"kid": header["kid"]}
        )

    h, p, s = token.split(".")
    forgeries = {
        "wrong key": signed(),
        "alg none": f"{b64({'alg': 'none', 'kid': header['kid']})}.{p}.",
        "tampered payload": f"{h}.{b64({**claims, 'sub': 'someone-else'})}.{s}",
        "tampered signature": f"{h}.{p}.{s[:-4]}AAAA",
    }
    # Algorithm confusion: HMAC keyed with our real published key, in every encoding an
    # HMAC verifier might be handed it (PyJWT refuses to sign these, so do it by hand).
    published = httpx.get(f"{running.url}/.well-known/jwks.json").json()["keys"]
    ours = next(k for k in published if k["kid"] == header["kid"])
    public = OKPAlgorithm.from_jwk(json.dumps(ours))
    materials = {
        "jwk json": json.dumps(ours).encode(),
        "jwk x": ours["x"].encode(),
        "raw": public.public_bytes(Encoding.Raw, PublicFormat.Raw),
        "pem": public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH),
    }
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        for what, material in materials.items():
            signing_input = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': ours['kid']})}.{p}"
            mac = hmac.new(material, signing_input.encode(), digest).digest()
            sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
            forgeries[f"{alg} keyed with the published key ({what})"] = f"{signing_input}.{sig}"
    for name, forged in forgeries.items():
        assert me_with(running, forged) == 401, name


def test_key_headers_and_kid_injection_are_ignored(running: RunningApp) -> None:
    """A token may not bring its own key (``jwk``), point at one (``jku``, ``x5u``), or
    smuggle anything through ``kid``: only our published keys, chosen by exact kid."""
    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    token = browser.client.cookies["access_token"]
    our_kid = jwt.get_unverified_header(token)["kid"]
    _, p, _ = token.split(".")
    stranger = Ed25519PrivateKey.generate()
    stranger_jwk = json.loads(OKPAlgorithm.to_jwk(stranger.public_key()))
    fetched: list[str] = []

    async def attacker_site(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        fetched.append(scope["path"])
        body = json.dumps({"keys": [{**stranger_jwk, "kid": our_kid}]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def by_stranger(headers: dict[str, object]) -> str:
        # By hand: PyJWT would refuse to write some of these headers (a kid that is a list).
        signing_input = f"{b64({'alg': 'EdDSA', 'typ': 'JWT', **headers})}.{p}"
        sig = base64.urlsafe_b64encode(stranger.sign(signing_input.encode()))
        return f"{signing_input}.{sig.rstrip(b'=').decode()}"

    with serve(attacker_site) as evil:
        forgeries = {
            "embedded jwk, our kid": by_stranger({"kid": our_kid, "jwk": stranger_jwk}),
            "embedded jwk, no kid": by_stranger({"jwk": stranger_jwk}),
            "jku to the attacker": by_stranger({"kid": our_kid, "jku": f"{evil}/jwks.json"}),
            "jku, unknown kid": by_stranger({"kid": "evil", "jku": f"{evil}/jwks.json"}),
            "x5u to the attacker": by_stranger({"kid": our_kid, "x5u": f"{evil}/cert.pem"}),
            "kid path traversal": by_stranger({"kid": "../../../../dev/null"}),
            "kid sql": by_stranger({"kid": "x' UNION SELECT 'AAAA' --"}),
            "kid with a NUL": by_stranger({"kid": our_kid + "\x00"}),
            "kid prefix": by_stranger({"kid": our_kid[:-1]}),
            "kid as a list": by_stranger({"kid": [our_kid]}),
            "kid as an object": by_stranger({"kid": {"$ne": ""}}),
            "empty kid": by_stranger({"kid": ""}),
        }
        # The classic /dev/null trick: HMAC with an empty key and a kid naming an empty file.
        signing_input = f"{b64({'alg': 'HS256', 'kid': '../../../../dev/null'})}.{p}"
        empty_mac = hmac.new(b"", signing_input.encode(), hashlib.sha256).digest()
        forgeries["kid /dev/null with an empty HMAC key"] = (
            f"{signing_input}.{base64.urlsafe_b64encode(empty_mac).rstrip(b'=').decode()}"
        )
        for name, forged in forgeries.items():
            assert me_with(running, forged) == 401, name
    assert fetched == []  # the app never fetched a key from a URL a token named
    assert me_with(running, token) == 200


@pytest.mark.parametrize(
    "change",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"sid": "no-such-session"},
    ],
)
def test_tokens_with_wrong_claims_are_refused(
    running: RunningApp, change: dict[str, object]
) -> None:
    """Signed with our own key (as a stolen key would), but expired or for elsewhere."""
    import asyncio

    from upwork_assistant.services import Services

    browser, user_id = sign_in(running, SANDBOX_USERS["alex"])
    sid = rows(running.db_path, "SELECT id FROM sessions")[0][0]

    async def forge() -> str:
        svc = Services.build(running.settings)
        try:
            await svc.jwt_keys.load()
            token, _ = svc.jwt.issue(user_id, sid)
            claims = jwt.decode(token, options={"verify_signature": False})
            key = svc.jwt._keys[svc.jwt.kid]
            return jwt.encode(
                {**claims, **change}, key, algorithm="EdDSA", headers={"kid": svc.jwt.kid}
            )
        finally:
            await svc.aclose()

    assert me_with(running, asyncio.run(forge())) == 401
    del browser


def test_session_has_an_absolute_lifetime(app_factory: AppFactory) -> None:
    app = app_factory(session_max_days=1)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    refresh = browser.client.cookies.get("refresh_token", path="/api/auth") or ""
    csrf = browser.client.cookies["csrf_token"]
    headers = {**JSON, "X-CSRF-Token": csrf, "User-Agent": browser.client.headers["user-agent"]}
    r = httpx.post(
        f"{app.url}/api/auth/refresh", headers=headers, cookies={"refresh_token": refresh}
    )
    assert r.status_code == 200
    expires = rows(app.db_path, "SELECT expires_at, created_at FROM sessions")[0]
    assert expires[0] <= sqlite_time(datetime.now(UTC) + timedelta(days=1, seconds=5))
    # A session signed in more than the maximum ago cannot be refreshed any further.
    rows(
        app.db_path,
        "UPDATE sessions SET created_at=?, expires_at=?",
        sqlite_time(datetime.now(UTC) - timedelta(days=2)),
        sqlite_time(datetime.now(UTC) - timedelta(seconds=1)),
    )
    again = httpx.post(
        f"{app.url}/api/auth/refresh",
        headers=headers,
        cookies={"refresh_token": r.cookies["refresh_token"]},
    )
    assert again.status_code == 401


def test_refresh_tokens_are_long_random_values(running: RunningApp) -> None:
    seen = set()
    for _ in range(3):
        browser, _ = sign_in(running, SANDBOX_USERS["alex"])
        token = browser.client.cookies.get("refresh_token", path="/api/auth") or ""
        assert len(token) >= 43  # 256 bits in URL-safe base64
        seen.add(token)
    assert len(seen) == 3


def test_replayed_totp_is_logged(running: RunningApp) -> None:
    from .test_mfa import enable_mfa, sign_out, start_mfa_sign_in, submit

    browser, user_id = sign_in(running, SANDBOX_USERS["olena"])
    secret, _ = enable_mfa(browser)
    sign_out(browser)
    start_mfa_sign_in(browser, SANDBOX_USERS["olena"])
    # Exactly the code used to turn MFA on (its time step is stored), even when a new
    # 30-second step has begun since.
    used_step = rows(running.db_path, "SELECT mfa_last_step FROM users WHERE id=?", user_id)
    used_code = pyotp.TOTP(secret).at(int(used_step[0][0]) * 30)
    r = submit(browser, used_code, as_json=True)
    assert r.json()["error"] == "mfa_code_reused"
    assert len(audit_events(running.db_path, "mfa.code_reused")) == 1
    assert audit_events(running.db_path, "mfa.failed") == []  # not counted as a guess


def test_headers_frame_ancestors_and_hsts(app_factory: AppFactory) -> None:
    app = app_factory(
        app_base_url="https://assistant.example.com", upwork_client_id="c", upwork_client_secret="s"
    )
    r = httpx.get(f"{app.url}/")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"


def test_client_secret_never_logged(external: External, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, sb = external.app, external.sandbox
    sign_in(app, SANDBOX_USERS["alex"])
    sb.faults(token_status=500)
    browser = app.browser()
    browser.get(browser.decide(browser.start_sign_in()))
    assert sb.client_secret not in caplog.text
    assert app.settings.secrets.secret_key not in caplog.text
