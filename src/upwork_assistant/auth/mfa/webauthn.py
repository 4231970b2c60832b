"""The passkey factor (WebAuthn): security keys, phones and laptops as a second factor after
"Sign in with Upwork", never instead of it.

The ceremonies are py_webauthn's (options, attestation ``none``, signature checks, CBOR and
COSE); what is ours is the relying party (derived from APP_BASE_URL), the challenges (a
row each: one purpose, bound to the sign-in's MFA challenge or to the session that asked,
spent once, dead after ``MfaPolicy.challenge_ttl``) and the sign counter rule (a counter
that does not grow is refused, since it can mean a copied key). Everything here runs in
the caller's transaction; the use cases are in service.py."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ...db.models import WebAuthnChallenge, WebAuthnCredential
from ...db.types import utcnow
from ..errors import AuthError
from .lockout import MfaPolicy

Purpose = Literal["register", "signin", "reauth"]
#: A passkey's name: what the user calls it on the Security page.
NAME_MAX = 64
#: At most this many passkeys per account (each sign-in lists them all to the browser).
MAX_PASSKEYS = 20
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys belong to: the RP id (a domain: browsers refuse IP addresses) and
    the origins whose pages may use them. ``problem`` names why passkeys cannot work with
    this APP_BASE_URL (None when they can)."""

    id: str
    name: str
    origin: str
    problem: str | None = None

    @classmethod
    def from_base_url(cls, base_url: str, name: str, production: bool) -> RelyingParty:
        parts = urlsplit(base_url)
        host = (parts.hostname or "").lower()
        port = f":{parts.port}" if parts.port else ""
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
                host
            )
        except ValueError:
            address = None
        is_ip = address is not None
        if address is not None and address.is_loopback and not production:
            # Development at http://127.0.0.1: WebAuthn needs a domain, and localhost is one
            # (a secure context over plain http); the pages link there.
            return cls("localhost", name, f"{parts.scheme}://localhost{port}")
        origin = f"{parts.scheme}://{host}{port}"
        if is_ip:
            return cls(host, name, origin, problem="ip_address")
        if production and parts.scheme != "https":
            return cls(host, name, origin, problem="not_https")
        if parts.scheme != "https" and host not in _LOOPBACK_NAMES:
            return cls(host, name, origin, problem="not_https")
        return cls(host, name, origin)


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str
    public_key: bytes
    sign_count: int
    aaguid: str
    backed_up: bool
    transports: list[str]


def clean_name(name: str) -> str:
    """A passkey's name, trimmed; AuthError(passkey_name_invalid) when empty or too long."""
    cleaned = " ".join((name or "").split())
    if not cleaned or len(cleaned) > NAME_MAX or not cleaned.isprintable():
        raise AuthError("passkey_name_invalid")
    return cleaned


def public_key_fingerprint(public_key: bytes) -> str:
    """What the security log keeps of a public key: its SHA-256, so the chain pins it."""
    return hashlib.sha256(public_key).hexdigest()


def _challenge_row_id(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _client_challenge(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed, read from the credential's clientDataJSON (checked
    again, with everything else, by py_webauthn)."""
    try:
        raw = base64url_to_bytes(credential["response"]["clientDataJSON"])
        return parse_client_data_json(raw).challenge
    except (KeyError, TypeError, ValueError, WebAuthnException):
        raise AuthError("passkey_invalid") from None


_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def _reported_transports(credential: dict[str, Any]) -> list[str]:
    """The transports the browser reported (``response.transports``), known ones only:
    a hint for later sign-ins, never trusted for anything else."""
    response = credential.get("response")
    raw = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(raw, list):
        return []
    return list(dict.fromkeys(t for t in raw if isinstance(t, str) and t in _KNOWN_TRANSPORTS))


def _transports(values: list[str]) -> list[AuthenticatorTransport]:
    return [AuthenticatorTransport(v) for v in values if v in _KNOWN_TRANSPORTS]


def _descriptors(rows: list[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(row.credential_id), transports=_transports(row.transports)
        )
        for row in rows
    ]


class PasskeyFactor:
    def __init__(self, rp: RelyingParty, policy: MfaPolicy) -> None:
        self.rp = rp
        self.policy = policy

    def _require_available(self) -> None:
        if self.rp.problem is not None:
            raise AuthError("passkeys_unavailable")

    @staticmethod
    async def of_user(db: AsyncSession, user_id: str) -> list[WebAuthnCredential]:
        rows = await db.execute(
            select(WebAuthnCredential)
            .where(WebAuthnCredential.user_id == user_id)
            .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
        )
        return list(rows.scalars())

    # ----- challenges ------------------------------------------------------------------

    async def _new_challenge(
        self,
        db: AsyncSession,
        user_id: str,
        purpose: Purpose,
        challenge: bytes,
        mfa_challenge_id: str | None,
        session_id: str | None,
    ) -> None:
        now = utcnow()
        await db.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at < now))
        db.add(
            WebAuthnChallenge(
                id=_challenge_row_id(challenge),
                user_id=user_id,
                purpose=purpose,
                mfa_challenge_id=mfa_challenge_id,
                session_id=session_id,
                created_at=now,
                expires_at=now + self.policy.challenge_ttl,
            )
        )

    async def spend_challenge(
        self,
        db: AsyncSession,
        credential: dict[str, Any],
        user_id: str,
        purpose: Purpose,
        *,
        mfa_challenge_id: str | None = None,
        session_id: str | None = None,
    ) -> bytes:
        """The challenge this credential answers, spent now: it must have been issued for
        this user, this purpose and this sign-in or session, be unspent and not expired.
        A conditional UPDATE, so two requests carrying one answer cannot both pass."""
        challenge = _client_challenge(credential)
        row_id = _challenge_row_id(challenge)
        now = utcnow()
        result = await db.execute(
            update(WebAuthnChallenge)
            .where(
                WebAuthnChallenge.id == row_id,
                WebAuthnChallenge.user_id == user_id,
                WebAuthnChallenge.purpose == purpose,
                WebAuthnChallenge.consumed_at.is_(None),
                WebAuthnChallenge.expires_at > now,
                (
                    WebAuthnChallenge.mfa_challenge_id == mfa_challenge_id
                    if mfa_challenge_id is not None
                    else WebAuthnChallenge.mfa_challenge_id.is_(None)
                ),
                (
                    WebAuthnChallenge.session_id == session_id
                    if session_id is not None
                    else WebAuthnChallenge.session_id.is_(None)
                ),
            )
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            return challenge
        expires_at: datetime | None = await db.scalar(
            select(WebAuthnChallenge.expires_at).where(
                WebAuthnChallenge.id == row_id,
                WebAuthnChallenge.user_id == user_id,
                WebAuthnChallenge.consumed_at.is_(None),
            )
        )
        if expires_at is not None and expires_at <= now:
            raise AuthError("passkey_challenge_expired")
        raise AuthError("passkey_challenge_invalid")

    # ----- registration ----------------------------------------------------------------

    async def registration_options(
        self, db: AsyncSession, user_id: str, user_name: str, session_id: str
    ) -> dict[str, Any]:
        """PublicKeyCredentialCreationOptions (as JSON) for a new passkey of this user."""
        self._require_available()
        existing = await self.of_user(db, user_id)
        if len(existing) >= MAX_PASSKEYS:
            raise AuthError("passkey_limit")
        options = generate_registration_options(
            rp_id=self.rp.id,
            rp_name=self.rp.name,
            # An opaque handle (our id), never the person's name or Upwork id.
            user_id=user_id.encode(),
            user_name=user_name,
            user_display_name=user_name,
            timeout=int(self.policy.challenge_ttl.total_seconds() * 1000),
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(existing),
        )
        await self._new_challenge(db, user_id, "register", options.challenge, None, session_id)
        return dict(json.loads(options_to_json(options)))

    def verify_registration(self, credential: dict[str, Any], challenge: bytes) -> NewPasskey:
        self._require_available()
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                require_user_verification=False,
            )
        except (WebAuthnException, KeyError, TypeError, ValueError, AttributeError):
            raise AuthError("passkey_invalid") from None
        return NewPasskey(
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            backed_up=verified.credential_backed_up,
            transports=_reported_transports(credential),
        )

    # ----- assertions (the second factor at sign-in, or a fresh confirmation) ----------

    async def assertion_options(
        self,
        db: AsyncSession,
        user_id: str,
        purpose: Purpose,
        *,
        mfa_challenge_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        self._require_available()
        existing = await self.of_user(db, user_id)
        if not existing:
            raise AuthError("passkey_none")
        options = generate_authentication_options(
            rp_id=self.rp.id,
            timeout=int(self.policy.challenge_ttl.total_seconds() * 1000),
            allow_credentials=_descriptors(existing),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        await self._new_challenge(
            db, user_id, purpose, options.challenge, mfa_challenge_id, session_id
        )
        return dict(json.loads(options_to_json(options)))

    @staticmethod
    async def find(
        db: AsyncSession, user_id: str, credential: dict[str, Any]
    ) -> WebAuthnCredential:
        """The user's stored passkey this assertion names; AuthError(passkey_unknown) when
        it is nobody's, or somebody else's."""
        raw_id = credential.get("rawId") or credential.get("id")
        if not isinstance(raw_id, str) or len(raw_id) > 1400:
            raise AuthError("passkey_invalid")
        row = (
            await db.execute(
                select(WebAuthnCredential).where(WebAuthnCredential.credential_id == raw_id)
            )
        ).scalar_one_or_none()
        if row is None or row.user_id != user_id:
            raise AuthError("passkey_unknown")
        return row

    def verify_assertion(
        self, credential: dict[str, Any], challenge: bytes, stored: WebAuthnCredential
    ) -> int:
        """The assertion's new sign count; AuthError(passkey_invalid) when the signature,
        origin, RP id or flags are wrong, AuthError(passkey_counter_regressed) when the
        counter did not grow (checked here, after the signature, so only the key's real
        holder can raise that alarm)."""
        self._require_available()
        try:
            # The counter is compared below, not by py_webauthn (which would check it before
            # the signature, and say no more than "invalid").
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp.id,
                expected_origin=self.rp.origin,
                credential_public_key=stored.public_key,
                credential_current_sign_count=0,
                require_user_verification=False,
            )
        except (WebAuthnException, KeyError, TypeError, ValueError, AttributeError):
            raise AuthError("passkey_invalid") from None
        new, old = verified.new_sign_count, stored.sign_count
        # Authenticators that keep no counter send 0 every time (most synced passkeys).
        if (new > 0 or old > 0) and new <= old:
            raise AuthError("passkey_counter_regressed")
        return new
