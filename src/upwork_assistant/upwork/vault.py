"""The token vault: the one place that hands out a valid Upwork access token for a user.

- Tokens are encrypted at rest with the key ring (AES-256-GCM); the associated data binds
  every ciphertext to its user and field. They are decrypted only in memory, when used.
- An access token is refreshed when less than the margin is left of it, and after Upwork
  answered 401 to it (once: the caller gives up after a second 401).
- Single flight: in one process a per-user lock, across processes a lease on the user's
  connection row (owner + expiry, so a crashed refresher blocks nobody for long). Upwork
  sees one refresh however many requests need the token at once.
- The new pair replaces the old one in one UPDATE; a failed refresh leaves the working pair
  as it was. ``invalid_grant`` marks the connection ``needs_reauth`` and stops all calls
  to Upwork for that user until they sign in again.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import ConnectionStatus, UpworkConnection
from ..db.types import utcnow
from ..security import audit
from ..security.aad import upwork_token_aad
from ..security.keys import DecryptionError, KeyRing, Sealed
from . import metrics
from .errors import UpworkError, UpworkInvalidGrant, UpworkReauthRequired, UpworkUnavailable
from .oauth import TokenSet, UpworkOAuthClient

log = structlog.get_logger("upwork_assistant.upwork")


class TokensUnreadable(Exception):
    """A connection's stored tokens cannot be decrypted (the message names no secret)."""


@dataclass(frozen=True)
class UpworkTokens:
    access_token: str
    refresh_token: str | None
    access_expires_at: datetime | None

    def __repr__(self) -> str:
        return f"UpworkTokens(access_expires_at={self.access_expires_at!r})"


@dataclass(frozen=True)
class AccessGrant:
    """A usable access token and the organization context to send with it."""

    token: str
    tenant_id: str | None

    def __repr__(self) -> str:
        return f"AccessGrant(tenant_id={self.tenant_id!r})"


@dataclass(frozen=True)
class VaultPolicy:
    refresh_margin: timedelta = timedelta(minutes=5)
    lease: timedelta = timedelta(seconds=30)


class TokenVault:
    def __init__(
        self, keyring: KeyRing, db: Database, oauth: UpworkOAuthClient, policy: VaultPolicy
    ) -> None:
        self._keyring = keyring
        self._db = db
        self._oauth = oauth
        self.policy = policy
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.owner = f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(4)}"

    # ----- storing and opening -----------------------------------------------------------

    def _sealed(self, user_id: str, tokens: TokenSet) -> dict[str, Any]:
        """The columns of a token pair, each token encrypted and bound to user and field."""
        access = self._keyring.encrypt(tokens.access_token, aad=upwork_token_aad(user_id, "access"))
        refresh = (
            self._keyring.encrypt(tokens.refresh_token, aad=upwork_token_aad(user_id, "refresh"))
            if tokens.refresh_token
            else None
        )
        return {
            "access_token_kid": access.key_id,
            "access_token_ct": access.ciphertext,
            "refresh_token_kid": refresh.key_id if refresh else None,
            "refresh_token_ct": refresh.ciphertext if refresh else None,
            "token_type": tokens.token_type,
            "scope": tokens.scope,
            "access_expires_at": tokens.access_expires_at,
            "refresh_expires_at": tokens.refresh_expires_at,
            "status": ConnectionStatus.ACTIVE,
            "updated_at": utcnow(),
        }

    async def store(
        self,
        db: AsyncSession,
        user_id: str,
        tokens: TokenSet,
        *,
        organization_id: str | None,
        missing_grants: list[str],
        null_fields: list[str] | None = None,
    ) -> None:
        """Put a new grant (a sign-in's tokens) on the user's connection, in the caller's
        transaction, with its organization and what the key's scopes refused. An upsert,
        so two sign-ins of one user racing each other both land; each bumps the grant's
        generation, so a refresh of the older grant still in flight cannot overwrite it."""
        now = utcnow()
        values: dict[str, Any] = {
            **self._sealed(user_id, tokens),
            "organization_id": organization_id,
            "missing_grants": missing_grants,
            "null_fields": null_fields or [],
            "grants_checked_at": now,
        }
        insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(UpworkConnection).values(user_id=user_id, created_at=now, **values)
        await db.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_=values))

    async def _store_refreshed(
        self, user_id: str, tokens: TokenSet, refreshed: UpworkConnection
    ) -> bool:
        """Replace the pair we refreshed with its successor: a compare-and-swap on the
        stored ciphertexts, which every store renews (fresh nonces), so they version the
        grant. False when the user signed in again meanwhile: the newer grant is kept and
        the successor of the old one is dropped (Upwork's old token family just ages)."""
        async with self._db.write() as db:
            result = await db.execute(
                update(UpworkConnection)
                .where(
                    UpworkConnection.user_id == user_id,
                    UpworkConnection.access_token_ct == refreshed.access_token_ct,
                    UpworkConnection.refresh_token_ct == refreshed.refresh_token_ct,
                )
                .values(**self._sealed(user_id, tokens), last_refresh_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def open(self, conn: UpworkConnection) -> UpworkTokens:
        """Decrypt a connection's tokens, in memory, for immediate use. Raises
        TokensUnreadable when a key is missing from the ring or the row is damaged."""
        try:
            access = self._keyring.decrypt(
                Sealed(conn.access_token_kid, conn.access_token_ct),
                aad=upwork_token_aad(conn.user_id, "access"),
            )
            refresh = None
            if conn.refresh_token_kid and conn.refresh_token_ct:
                refresh = self._keyring.decrypt(
                    Sealed(conn.refresh_token_kid, conn.refresh_token_ct),
                    aad=upwork_token_aad(conn.user_id, "refresh"),
                )
        except DecryptionError as exc:
            raise TokensUnreadable(str(exc)) from None
        return UpworkTokens(access, refresh, conn.access_expires_at)

    async def connection(self, user_id: str) -> UpworkConnection:
        async with self._db.session() as db:
            conn = await db.get(UpworkConnection, user_id)
        if conn is None:
            raise UpworkReauthRequired()
        return conn

    # ----- handing out access tokens -----------------------------------------------------

    async def access_token(
        self, user_id: str, *, rejected: str | None = None, renew_before: datetime | None = None
    ) -> AccessGrant:
        """A valid access token for the user, refreshed first when needed.

        ``rejected``: an access token Upwork just answered 401 to (refresh unless another
        request already did). ``renew_before``: refresh unless the refresh token lives at
        least until then (the worker's keep-alive).

        Tokens that cannot be decrypted (a key missing from the ring, a damaged row) put
        the connection in ``needs_reauth``: reconnecting stores fresh ones. One such row
        never stops the worker or answers 500."""
        try:
            grant = self._usable(await self.connection(user_id), rejected, renew_before)
            if grant is not None:
                return grant
            lock = self._locks.get(user_id)
            if lock is None:
                lock = self._locks[user_id] = asyncio.Lock()
            async with lock:
                return await self._refresh_single_flight(user_id, rejected, renew_before)
        except TokensUnreadable as exc:
            log.error("upwork_tokens_unreadable", user_id=user_id, problem=str(exc))
            raise await self.needs_reauth(user_id, "token_unreadable") from None

    def _usable(
        self, conn: UpworkConnection, rejected: str | None, renew_before: datetime | None
    ) -> AccessGrant | None:
        if conn.status != ConnectionStatus.ACTIVE:
            raise UpworkReauthRequired()
        tokens = self.open(conn)
        if rejected is not None and tokens.access_token == rejected:
            return None
        if renew_before is not None and (
            conn.refresh_expires_at is not None and conn.refresh_expires_at < renew_before
        ):
            return None
        expires = conn.access_expires_at
        if expires is not None and expires - utcnow() <= self.policy.refresh_margin:
            return None
        # No expiry known (no expires_in from Upwork): long-lived until Upwork says 401.
        return AccessGrant(tokens.access_token, conn.organization_id)

    async def _refresh_single_flight(
        self, user_id: str, rejected: str | None, renew_before: datetime | None
    ) -> AccessGrant:
        deadline = time.monotonic() + 2 * self.policy.lease.total_seconds()
        while True:
            grant = self._usable(await self.connection(user_id), rejected, renew_before)
            if grant is not None:
                return grant  # another process refreshed while we waited
            if await self._take_lease(user_id):
                try:
                    return await self._refresh(user_id, rejected, renew_before)
                finally:
                    await self._release_lease(user_id)
            if time.monotonic() > deadline:
                raise UpworkUnavailable("Refreshing the Upwork connection is taking too long.")
            await asyncio.sleep(0.05 + random.random() * 0.05)  # noqa: S311

    async def _take_lease(self, user_id: str) -> bool:
        now = utcnow()
        async with self._db.write() as db:
            result = await db.execute(
                update(UpworkConnection)
                .where(
                    UpworkConnection.user_id == user_id,
                    or_(
                        UpworkConnection.refresh_lease_until.is_(None),
                        UpworkConnection.refresh_lease_until < now,
                    ),
                )
                .values(refresh_lease_owner=self.owner, refresh_lease_until=now + self.policy.lease)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release_lease(self, user_id: str) -> None:
        async with self._db.write() as db:
            await db.execute(
                update(UpworkConnection)
                .where(
                    UpworkConnection.user_id == user_id,
                    UpworkConnection.refresh_lease_owner == self.owner,
                )
                .values(refresh_lease_owner=None, refresh_lease_until=None)
                .execution_options(synchronize_session=False)
            )

    async def _refresh(
        self, user_id: str, rejected: str | None, renew_before: datetime | None
    ) -> AccessGrant:
        """Holding the lease: refresh at Upwork and store the new pair."""
        conn = await self.connection(user_id)
        grant = self._usable(conn, rejected, renew_before)
        if grant is not None:
            return grant  # refreshed by the previous holder just before we took the lease
        current = self.open(conn)
        if not current.refresh_token:
            raise await self.needs_reauth(user_id, "no_refresh_token")
        try:
            # With the stored refresh token, even when an earlier refresh got a new pair
            # from Upwork but died before storing it: Upwork keeps the old token working
            # for 24 hours after a rotation (oauth.py), so that crash costs nothing.
            tokens = await self._oauth.refresh(current.refresh_token)
        except UpworkInvalidGrant as exc:
            latest = await self.connection(user_id)
            if latest.refresh_token_ct != conn.refresh_token_ct:
                # A holder whose lease had run out rotated the pair meanwhile: use theirs.
                grant = self._usable(latest, rejected, renew_before)
                if grant is not None:
                    return grant
            metrics.REFRESHES.labels("reauth_required").inc()
            raise await self.needs_reauth(user_id, "invalid_grant", exc.upwork_message) from None
        except UpworkError as exc:
            metrics.REFRESHES.labels("failed").inc()
            extra = {"upwork_message": exc.upwork_message} if exc.upwork_message else {}
            async with self._db.write() as db:
                await audit.record(
                    db,
                    audit.UPWORK_REFRESH_FAILED,
                    None,
                    user_id=user_id,
                    reason_code=exc.code,
                    **extra,
                )
            raise
        if not await self._store_refreshed(user_id, tokens, conn):
            log.info("upwork_refresh_superseded", user_id=user_id)
            latest = await self.connection(user_id)
            return AccessGrant(self.open(latest).access_token, latest.organization_id)
        rotated = tokens.refresh_token != current.refresh_token
        metrics.REFRESHES.labels("rotated" if rotated else "ok").inc()
        log.info(
            "upwork_token_refreshed",
            user_id=user_id,
            rotated=rotated,
            access_expires_at=str(tokens.access_expires_at),
        )
        return AccessGrant(tokens.access_token, conn.organization_id)

    async def needs_reauth(
        self, user_id: str, reason: str, upwork_message: str | None = None
    ) -> UpworkReauthRequired:
        """Mark the connection: no more calls to Upwork for this user until they
        reconnect. Returns the error to raise. ``upwork_message``: what Upwork said."""
        extra = {"upwork_message": upwork_message} if upwork_message else {}
        async with self._db.write() as db:
            await db.execute(
                update(UpworkConnection)
                .where(UpworkConnection.user_id == user_id)
                .values(status=ConnectionStatus.NEEDS_REAUTH, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await audit.record(
                db, audit.UPWORK_REAUTH_REQUIRED, None, user_id=user_id, reason=reason, **extra
            )
        log.warning("upwork_reauth_required", user_id=user_id, reason=reason, **extra)
        return UpworkReauthRequired()
