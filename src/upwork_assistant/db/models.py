"""The tables. Every schema change goes through an Alembic migration (db/migrations)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


class Role(StrEnum):
    """A user's role (the users.role column): an admin also runs the admin pages and API.
    The command line promotes and demotes."""

    USER = "user"
    ADMIN = "admin"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A local account, created from and kept in sync with one Upwork account."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    upwork_id: Mapped[str] = mapped_column(String(64), unique=True)
    #: Upwork content, kept as a cache of at most 24 hours (Upwork's API terms): each
    #: group carries the time it was fetched and is purged by the worker when too old.
    #: Only ``upwork_id`` (what identifies the account) is kept for as long as the account.
    upwork_nid: Mapped[str | None] = mapped_column(String(128))
    upwork_rid: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(512))
    photo_url: Mapped[str | None] = mapped_column(String(1024))
    profile_key: Mapped[str | None] = mapped_column(String(64))
    identity_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email: Mapped[str | None] = mapped_column(String(254))
    email_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    profile_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Lease for the scheduled sync: while in the future, no other worker syncs this user.
    sync_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: TOTP secret (encrypted like the Upwork tokens) once MFA is on; the pending one
    #: between setup and the first confirmed code.
    mfa_secret_kid: Mapped[str | None] = mapped_column(String(32))
    mfa_secret_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    mfa_pending_kid: Mapped[str | None] = mapped_column(String(32))
    mfa_pending_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The last TOTP time step accepted: a code is good once only.
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    mfa_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def totp_enabled(self) -> bool:
        """An authenticator app is set up (MFA may also be on through passkeys alone)."""
        return self.mfa_secret_ct is not None

    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_reason: Mapped[str | None] = mapped_column(String(500))

    connection: Mapped[UpworkConnection | None] = relationship(
        back_populates="user", uselist=False, lazy="raise"
    )

    @property
    def display_name(self) -> str:
        """The name to show: Upwork's, or while that is purged or refused, a stand-in."""
        return self.name or self.upwork_nid or f"Upwork user {self.upwork_id}"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def roles(self) -> list[str]:
        """The roles claim of our access tokens: an admin is also a user."""
        return [Role.ADMIN.value, Role.USER.value] if self.is_admin else [Role.USER.value]


class SessionEnd(StrEnum):
    """``sessions.revoked_reason``: why a session ended before it expired."""

    LOGOUT = "logout"  # signed out
    USER = "user"  # ended by its user from the list of sessions
    USER_OTHERS = "user_others"  # "sign out my other sessions"
    MFA_CHANGED = "mfa_changed"  # the same, asked for with a change of a second factor
    BLOCKED = "blocked"  # an admin blocked the user
    REFRESH_REUSE = "refresh_reuse"  # a spent refresh token came back: maybe stolen


class ConnectionStatus(StrEnum):
    """``upwork_connections.status``: the stored tokens work, or Upwork refused them and
    the user must sign in with Upwork again."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"


class UpworkConnection(Base):
    """The user's Upwork tokens, each encrypted (AEAD) with the key id stored beside it."""

    __tablename__ = "upwork_connections"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    access_token_kid: Mapped[str] = mapped_column(String(32))
    access_token_ct: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token_kid: Mapped[str | None] = mapped_column(String(32))
    refresh_token_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_type: Mapped[str] = mapped_column(String(32), default="Bearer")
    scope: Mapped[str | None] = mapped_column(String(1024))
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(32), default=ConnectionStatus.ACTIVE.value)
    organization_id: Mapped[str | None] = mapped_column(String(64))
    #: ``Type.field`` names the API key's scopes refused at the last fetch, and when.
    missing_grants: Mapped[list[str]] = mapped_column(JSON, default=list)
    grants_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Fields Upwork's schema declares non-null that it answered null at the last check
    #: (left out of the next syncs' query, like refused ones, until the next full check).
    null_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_refresh_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Single-flight refresh across processes: the holder of an unexpired lease refreshes.
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="connection", lazy="raise")


class SyncTrigger(StrEnum):
    """``profile_syncs.trigger``: what started a sync of the Upwork profile."""

    SIGNIN = "signin"
    MANUAL = "manual"  # the user's "Sync now"
    STALE = "stale"  # the user came back and their Upwork content was due
    SCHEDULED = "scheduled"  # the worker's background syncs: only in rows from before they ended


class ProfileSync(Base):
    """One run of the Upwork profile sync: when, why, whether it worked, what changed."""

    __tablename__ = "profile_syncs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))  # a SyncTrigger
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    changed: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(String(64))


class FreelancerProfileCache(Base):
    """The user's freelancer profile as Upwork last sent it, validated: Upwork content, so
    a cache of at most 24 hours (deleted by the worker after ``fetched_at`` + the TTL).

    No row: never fetched, purged, or the API key's scopes refuse the profile (the
    connection's ``missing_grants`` says which). ``has_profile`` False: Upwork says the
    account has no freelancer profile (a client's account)."""

    __tablename__ = "freelancer_profiles"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    has_profile: Mapped[bool] = mapped_column(Boolean)
    #: ``upwork.freelancer.FreelancerProfile`` as JSON (money as decimal strings).
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class UserSession(Base):
    """One signed-in browser or client. The refresh token is kept only as a keyed hash."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    refresh_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    #: When the refresh token was last rotated, and the pair it gave (encrypted), which
    #: the same client racing itself may receive again within the grace window.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grace_kid: Mapped[str | None] = mapped_column(String(32))
    grace_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: When this session last proved a second factor (the sign-in's MFA step, or a
    #: confirmation on the Security page): changes to the factors need one that is fresh.
    mfa_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RotatedRefreshToken(Base):
    """Hashes of refresh tokens already rotated away: presenting one again means theft."""

    __tablename__ = "rotated_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MfaChallenge(Base):
    """A sign-in waiting for its second factor; the browser holds a signed opaque id."""

    __tablename__ = "mfa_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebAuthnCredential(Base):
    """A passkey or security key registered as a second factor. The public key is not a
    secret; what matters is that nobody swaps it, so every change of the row is an audited
    event (mfa.passkey_added / _removed) in the hash-chained log."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The authenticator's credential id, base64url (unique across every user).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    #: The COSE public key as the authenticator sent it.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name: Mapped[str] = mapped_column(String(64))
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36))
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebAuthnChallenge(Base):
    """A WebAuthn ceremony in progress: the random challenge the browser must sign, for
    one purpose (register, signin, reauth), bound to the sign-in's MFA challenge or to the
    session that asked; spent once, dead after a few minutes. The id is the SHA-256 of
    the challenge, found again from the clientDataJSON the browser sends back."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    mfa_challenge_id: Mapped[str | None] = mapped_column(
        ForeignKey("mfa_challenges.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaBackupCode(Base):
    """One single-use backup code, kept only as an argon2 hash."""

    __tablename__ = "mfa_backup_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaFailure(Base):
    """A wrong MFA code; more than the limit within the window locks MFA for the user."""

    __tablename__ = "mfa_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthFlow(Base):
    """Server-side state of one "Sign in with Upwork" attempt: single use, short-lived.

    The browser holds only a signed opaque id of this row, never the PKCE verifier."""

    __tablename__ = "oauth_flows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    return_to: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """A security-relevant event. ``details`` never holds a token, code or secret."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    session_id: Mapped[str | None] = mapped_column(String(36))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Tamper evidence: HMAC chain over the record, the previous record's hash and a
    #: digest of the personal fields (kept when those are anonymised on account deletion).
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    chain_hash: Mapped[str] = mapped_column(String(64), default="")
    pii_digest: Mapped[str] = mapped_column(String(64), default="")
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditChainHead(Base):
    """One row: the newest record's id and hash. Locking it orders concurrent writers."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement "the chain reached this hash at this record", so that pruning
    old records (retention) does not break verification and tail deletions show."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event_id: Mapped[int] = mapped_column(Integer, index=True)
    chain_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class JwtSigningKey(Base):
    """Our access-token signing keys (Ed25519, private part encrypted with the key ring).
    The newest signs; older ones keep verifying until their tokens have expired."""

    __tablename__ = "jwt_signing_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    private_kid: Mapped[str] = mapped_column(String(32))
    private_ct: Mapped[bytes] = mapped_column(LargeBinary)


class UpworkGate(Base):
    """One row shared by every process: our pace of calls to Upwork and Upwork's block.

    Upwork limits requests per IP address, so all processes of a host draw from one budget:
    ``next_slot`` is when the next call may go out (a queue of reservations, one interval
    apart), ``blocked_until`` holds every call back after a 429."""

    __tablename__ = "upwork_gate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_slot: Mapped[float] = mapped_column(Float, default=0.0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
    blocked_reason: Mapped[str | None] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10), default="")
    day_count: Mapped[int] = mapped_column(Integer, default=0)


Index("ix_sessions_user_active", UserSession.user_id, UserSession.revoked_at)
Index("ix_profile_syncs_user_started", ProfileSync.user_id, ProfileSync.started_at)
Index("ix_mfa_failures_user_time", MfaFailure.user_id, MfaFailure.created_at)
