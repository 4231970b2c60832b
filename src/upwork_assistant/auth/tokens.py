"""Our access tokens: EdDSA-signed JWTs (PyJWT), public keys at /.well-known/jwks.json."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    session_id: str
    expires_at: int


class JWTIssuer:
    def __init__(
        self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._private = private_key
        self._public = private_key.public_key()
        raw = self._public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl_seconds

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
        token = jwt.encode(claims, self._private, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, exp

    def verify(self, token: str) -> AccessClaims:
        """Raises ``jwt.InvalidTokenError`` for anything but a valid, current token of ours."""
        claims = jwt.decode(
            token,
            self._public,
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["sub", "sid", "iat", "exp", "iss", "aud", "jti"]},
            leeway=5,
        )
        sub, sid = claims["sub"], claims["sid"]
        if not isinstance(sub, str) or not isinstance(sid, str):
            raise jwt.InvalidTokenError("sub and sid must be strings")
        return AccessClaims(sub, sid, int(claims["exp"]))

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(OKPAlgorithm.to_jwk(self._public))
        jwk.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": [jwk]}
