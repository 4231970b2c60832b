"""Our access tokens: EdDSA-signed JWTs (PyJWT), public keys at /.well-known/jwks.json."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db.engine import Database
from ..db.models import JwtSigningKey
from ..db.types import utcnow
from ..security.aad import jwt_key_aad
from ..security.keys import KeyRing, Sealed

ALGORITHM = "EdDSA"


LEEWAY = 5  # seconds of clock skew allowed on exp
VERIFIED_CACHE_SIZE = 8192


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: int


def key_id(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()


class JWTIssuer:
    """Signs with the newest key it knows; verifies with any known key (by ``kid``).

    Keys live in the database (``jwt_signing_keys``, see :class:`JwtKeyStore`) so that every
    instance signs and verifies with the same set and keys can rotate: a new key signs, the
    old one keeps verifying until its tokens have expired. Until keys are loaded, the key
    derived from SECRET_KEY (also the first key stored) is used."""

    def __init__(
        self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl_seconds
        self.initial_key = private_key
        self._keys: dict[str, Ed25519PrivateKey] = {}
        self.kid = ""
        self.use_keys([private_key])

    def use_keys(self, keys: list[Ed25519PrivateKey]) -> None:
        """Install keys, oldest first: the last one signs."""
        self._keys = {key_id(k): k for k in keys}
        self._public = {kid: k.public_key() for kid, k in self._keys.items()}
        self.kid = key_id(keys[-1])
        # A retired key's tokens must fail from now on: forget what was verified.
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def issue(self, user_id: str, session_id: str) -> tuple[str, int]:
        now = int(time.time())
        exp = now + self.ttl
        claims = {
            "sub": user_id,
            "sid": session_id,
            "iat": now,
            "exp": exp,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(
            claims, self._keys[self.kid], algorithm=ALGORITHM, headers={"kid": self.kid}
        )
        return token, exp

    def verify(self, token: str) -> AccessClaims:
        """Raises ``jwt.InvalidTokenError`` for anything but a valid, current token of ours
        (``UnknownKey`` when it names a key this process does not know yet).

        A token that verified before is remembered (the exact string, until it expires or
        the keys change): a browser sends the same token with every request for 15 minutes,
        and the signature check is the dearest step of the request's auth path."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + LEEWAY:
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> AccessClaims:
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._public.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnknownKey(str(kid)[:40])
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["sub", "sid", "iat", "exp", "iss", "aud", "jti"]},
            leeway=LEEWAY,
        )
        sub, sid = claims["sub"], claims["sid"]
        if not isinstance(sub, str) or not isinstance(sid, str):
            raise jwt.InvalidTokenError("sub and sid must be strings")
        return AccessClaims(sub, sid, int(claims["exp"]))

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, private in self._keys.items():
            jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
            jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
            keys.append(jwk)
        return {"keys": keys}


class UnknownKey(jwt.InvalidTokenError):
    """The token names a signing key this process has not loaded (maybe a new one)."""


class JwtKeyStore:
    """The signing keys in the database, private parts encrypted with the key ring."""

    RELOAD_EVERY = 30.0  # seconds between reloads; an unknown kid may trigger one sooner

    def __init__(self, db: Database, keyring: KeyRing, issuer: JWTIssuer) -> None:
        self._db = db
        self._keyring = keyring
        self._issuer = issuer
        self._loaded_at = 0.0

    def _row(self, key: Ed25519PrivateKey) -> JwtSigningKey:
        kid = key_id(key)
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        sealed = self._keyring.encrypt(base64.b64encode(raw).decode(), aad=jwt_key_aad(kid))
        return JwtSigningKey(kid=kid, private_kid=sealed.key_id, private_ct=sealed.ciphertext)

    async def load(self) -> None:
        """Load every key (storing the initial one when there is none yet)."""
        async with self._db.session() as db:
            rows = list(
                (
                    await db.execute(select(JwtSigningKey).order_by(JwtSigningKey.created_at))
                ).scalars()
            )
        if not rows:
            try:
                async with self._db.write() as db:
                    db.add(self._row(self._issuer.initial_key))
            except IntegrityError:
                pass  # another instance stored it first: the same key
            await self.load()
            return
        keys = []
        for row in rows:
            raw = self._keyring.decrypt(
                Sealed(row.private_kid, row.private_ct), aad=jwt_key_aad(row.kid)
            )
            keys.append(Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw)))
        self._issuer.use_keys(keys)
        self._loaded_at = time.monotonic()

    async def reload_if_due(self, force: bool = False) -> None:
        """Pick up keys other instances added; at most every few seconds when forced."""
        age = time.monotonic() - self._loaded_at
        if age > self.RELOAD_EVERY or (force and age > 2.0):
            await self.load()

    async def rotate(self, keep_for: timedelta) -> str:
        """Add a new signing key; drop keys whose tokens have all expired."""
        new = Ed25519PrivateKey.generate()
        now = utcnow()
        async with self._db.write() as db:
            rows = list(
                (
                    await db.execute(select(JwtSigningKey).order_by(JwtSigningKey.created_at))
                ).scalars()
            )
            db.add(self._row(new))
            # A key retired before `now - keep_for` signed nothing still valid.
            for row in rows:
                if row.retired_at is None:
                    row.retired_at = now
                elif row.retired_at < now - keep_for:
                    await db.delete(row)
        await self.load()
        return key_id(new)
