"""A software WebAuthn authenticator for tests: it answers the server's options the way a
browser and a security key together would (``PublicKeyCredential.toJSON()`` form), with a
real P-256 key, attestation "none" and a sign counter. The CBOR and COSE come from the
``fido2`` library (Yubico's), the key from ``cryptography``.

Knobs for the faults the server must refuse: another origin, another RP id, a counter set
by hand, a key that signs for a credential id it does not own."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorData,
    CollectedClientData,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)


@dataclass
class SoftAuthenticator:
    """One authenticator (a security key, a phone): it holds the credentials it made."""

    origin: str
    counter_step: int = 1  # 0: an authenticator without a counter (synced passkeys)
    credentials: list[SoftCredential] = field(default_factory=list)

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        credential: SoftCredential | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.create`` options (their ``publicKey`` part).
        ``credential``: register again one this authenticator already holds (its id and
        key), as a browser ignoring ``excludeCredentials`` would."""
        public_key = options.get("publicKey", options)
        rp = rp_id or public_key["rp"]["id"]
        cred = credential or SoftCredential(
            credential_id=os.urandom(32),
            key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp,
            user_handle=unb64url(public_key["user"]["id"]),
        )
        client_data = CollectedClientData.create(
            type="webauthn.create",
            challenge=unb64url(public_key["challenge"]),
            origin=origin or self.origin,
        )
        flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV | AuthenticatorData.FLAG.AT
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp.encode()).digest(),
            flags,
            cred.sign_count,
            AttestedCredentialData.create(
                Aaguid.NONE, cred.credential_id, ES256.from_cryptography_key(cred.key.public_key())
            ),
        )
        attestation = AttestationObject.create("none", auth_data, {})
        if credential is None:
            self.credentials.append(cred)
        return {
            "id": cred.id,
            "rawId": cred.id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(bytes(client_data)),
                "attestationObject": b64url(bytes(attestation)),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        credential: SoftCredential | None = None,
        claim_id: str | None = None,
        counter: int | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get`` options with the first allowed credential
        this authenticator holds (or ``credential``). ``claim_id`` sends another credential
        id than the one that signs; ``counter`` sets the sign count sent."""
        public_key = options.get("publicKey", options)
        if credential is None:
            allowed = {c["id"] for c in public_key.get("allowCredentials", [])}
            held = [c for c in self.credentials if not allowed or c.id in allowed]
            if not held:
                raise LookupError("this authenticator holds none of the allowed credentials")
            credential = held[0]
        if counter is None:
            credential.sign_count += self.counter_step
            counter = credential.sign_count
        rp = rp_id or public_key.get("rpId") or credential.rp_id
        client_data = CollectedClientData.create(
            type="webauthn.get",
            challenge=unb64url(public_key["challenge"]),
            origin=origin or self.origin,
        )
        auth_data = AuthenticatorData.create(
            hashlib.sha256(rp.encode()).digest(),
            AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV,
            counter,
        )
        signature = credential.key.sign(
            bytes(auth_data) + hashlib.sha256(bytes(client_data)).digest(),
            ec.ECDSA(hashes.SHA256()),
        )
        claimed = claim_id or credential.id
        return {
            "id": claimed,
            "rawId": claimed,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(bytes(client_data)),
                "authenticatorData": b64url(bytes(auth_data)),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
