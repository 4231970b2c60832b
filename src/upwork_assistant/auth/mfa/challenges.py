"""The second step of a sign-in with MFA on: a pending challenge (a row, and a signed cookie
naming it) that a code from the same browser completes, once, before it expires."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.engine import Database
from ...db.models import MfaChallenge
from ...db.types import utcnow
from ...security.keys import constant_time_equal, mac
from ..errors import AuthError
from .lockout import MfaPolicy


class Challenges:
    def __init__(self, db: Database, cookie_key: bytes, policy: MfaPolicy) -> None:
        self._db = db
        self._cookie_key = cookie_key
        self.policy = policy

    @staticmethod
    def _challenge_row_id(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def create(self, db: AsyncSession, user_id: str) -> str:
        """A pending second-factor step for a sign-in (in the caller's transaction).
        Returns the cookie value: a signed opaque id."""
        now = utcnow()
        await db.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < now))
        token = secrets.token_urlsafe(32)
        db.add(
            MfaChallenge(
                id=self._challenge_row_id(token),
                user_id=user_id,
                created_at=now,
                expires_at=now + self.policy.challenge_ttl,
            )
        )
        return f"{token}.{mac(self._cookie_key, f'mfa:{token}')}"

    async def live(self, cookie_value: str | None) -> MfaChallenge:
        """The live challenge this browser holds; AuthError otherwise."""
        if not cookie_value:
            raise AuthError("mfa_challenge_missing")
        token, _, signature = cookie_value.partition(".")
        if not token or not constant_time_equal(signature, mac(self._cookie_key, f"mfa:{token}")):
            raise AuthError("mfa_challenge_missing")
        async with self._db.session() as db:
            found = await db.get(MfaChallenge, self._challenge_row_id(token))
        if found is None or found.consumed_at is not None:
            raise AuthError("mfa_challenge_missing")
        if found.expires_at <= utcnow() or found.failures >= self.policy.max_failures:
            raise AuthError("mfa_challenge_expired")
        return found

    async def consume(self, db: AsyncSession, challenge_id: str) -> bool:
        result = await db.execute(
            update(MfaChallenge)
            .where(MfaChallenge.id == challenge_id, MfaChallenge.consumed_at.is_(None))
            .values(consumed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))
