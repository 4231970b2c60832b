"""The verified-token cache of JWTIssuer: a token verified once is accepted from memory,
but never past its expiry, never after its key is retired, and a tampered copy is a
different string that gets the full check."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from upwork_assistant.auth import tokens
from upwork_assistant.auth.tokens import JWTIssuer, UnknownKey


def issuer(key: Ed25519PrivateKey | None = None, ttl: int = 900) -> JWTIssuer:
    return JWTIssuer(
        key or Ed25519PrivateKey.generate(), issuer="ua", audience="ua-api", ttl_seconds=ttl
    )


def test_cached_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    jwts = issuer(ttl=60)
    token, exp = jwts.issue("user", "session")
    assert jwts.verify(token).session_id == "session"
    assert jwts.verify(token).session_id == "session"  # from the cache
    monkeypatch.setattr(tokens.time, "time", lambda: exp + tokens.LEEWAY + 1)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(exp + tokens.LEEWAY + 1))
    with pytest.raises(jwt.ExpiredSignatureError):
        jwts.verify(token)


def test_retired_key_fails_even_when_cached() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    jwts = issuer(old)
    token, _ = jwts.issue("user", "session")
    jwts.verify(token)
    jwts.use_keys([old, new])
    assert jwts.verify(token).user_id == "user"  # the old key still verifies
    jwts.use_keys([new])
    with pytest.raises(UnknownKey):
        jwts.verify(token)


def test_tampered_copy_gets_the_full_check() -> None:
    jwts = issuer()
    token, _ = jwts.issue("user", "session")
    jwts.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(jwt.InvalidTokenError):
        jwts.verify(forged)


def test_cache_is_bounded() -> None:
    jwts = issuer()
    for n in range(tokens.VERIFIED_CACHE_SIZE + 50):
        jwts.verify(jwts.issue(f"user{n}", "s")[0])
    assert len(jwts._verified) == tokens.VERIFIED_CACHE_SIZE


class _FrozenDatetime:
    """PyJWT reads the clock through datetime.now(tz=timezone.utc)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self, tz: object = None) -> object:
        import datetime as dt

        return dt.datetime.fromtimestamp(self.at, tz=dt.UTC)

    def __getattr__(self, name: str) -> object:
        import datetime as dt

        return getattr(dt.datetime, name)
