"""Key ring for encryption at rest, and keys derived from ``SECRET_KEY``.

Encryption uses AES-256-GCM (``cryptography``'s AEAD). Every ciphertext is stored with the
id of the key that made it, so keys can be rotated: the first key of
``TOKEN_ENCRYPTION_KEYS`` encrypts, every listed key decrypts.
Format of ``TOKEN_ENCRYPTION_KEYS``: comma-separated ``kid:base64url(32 bytes)`` entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config import ConfigError

NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be decrypted (unknown key id, or tampered data)."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes  # nonce || AES-GCM ciphertext+tag


class KeyRing:
    def __init__(self, spec: str) -> None:
        self._keys: dict[str, AESGCM] = {}
        self.primary_id = ""
        for raw in spec.split(","):
            entry = raw.strip()
            if not entry:
                continue
            kid, sep, b64 = entry.partition(":")
            if not sep or not kid:
                raise ConfigError("TOKEN_ENCRYPTION_KEYS entries look like 'kid:base64key'")
            try:
                key = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"TOKEN_ENCRYPTION_KEYS: key {kid!r} is not base64") from exc
            if len(key) != 32:
                raise ConfigError(f"TOKEN_ENCRYPTION_KEYS: key {kid!r} must be 32 bytes")
            if kid in self._keys:
                raise ConfigError(f"TOKEN_ENCRYPTION_KEYS: key id {kid!r} appears twice")
            self._keys[kid] = AESGCM(key)
            self.primary_id = self.primary_id or kid
        if not self._keys:
            raise ConfigError("TOKEN_ENCRYPTION_KEYS holds no key")

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: str, *, aad: str) -> Sealed:
        """Encrypt with the primary key. ``aad`` binds the ciphertext to its place
        (e.g. user id and field), so a ciphertext copied elsewhere does not decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        ct = self._keys[self.primary_id].encrypt(nonce, plaintext.encode(), aad.encode())
        return Sealed(self.primary_id, nonce + ct)

    def decrypt(self, sealed: Sealed, *, aad: str) -> str:
        cipher = self._keys.get(sealed.key_id)
        if cipher is None:
            raise DecryptionError(f"no key with id {sealed.key_id!r} in the key ring")
        blob = sealed.ciphertext
        if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) <= NONCE_BYTES:
            raise DecryptionError("ciphertext is damaged (too short)")
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode()).decode()
        except (InvalidTag, UnicodeDecodeError) as exc:
            raise DecryptionError("ciphertext failed authentication") from exc


class DerivedKeys:
    """Independent keys for independent purposes, all derived from ``SECRET_KEY`` by HKDF."""

    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key.encode()
        self.csrf = self._derive(b"csrf-token")
        self.flow_cookie = self._derive(b"oauth-flow-cookie")
        self.token_hash = self._derive(b"refresh-token-hash")
        self.mfa_cookie = self._derive(b"mfa-challenge-cookie")
        self.audit_chain = self._derive(b"audit-chain-hmac")
        self.audit_signing_key = Ed25519PrivateKey.from_private_bytes(
            self._derive(b"audit-checkpoint-ed25519")
        )
        self.jwt_signing_key = Ed25519PrivateKey.from_private_bytes(
            self._derive(b"jwt-ed25519-signing-key")
        )

    def _derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            self._secret
        )


def mac(key: bytes, message: str) -> str:
    """HMAC-SHA256 as URL-safe base64 without padding."""
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
