"""The lockout shared by every factor: more than ``max_failures`` wrong codes for a user
within ``window`` lock MFA for that user (a clear message with the time to wait, and an
``mfa.locked`` audit event); a sign-in challenge also dies after ``max_failures`` wrong
codes. Counted in the caller's transaction, which holds the user's row lock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import MfaChallenge, MfaFailure, User
from ...db.types import utcnow
from ...security import audit
from ...security.audit import RequestMeta
from ..errors import AuthError


@dataclass(frozen=True)
class MfaPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    challenge_ttl: timedelta = timedelta(minutes=5)
    #: How long a proven second factor lets this session change the factors (add or
    #: remove a passkey, add or remove the authenticator app).
    fresh_window: timedelta = timedelta(minutes=5)


class MfaLocked(AuthError):
    """Too many wrong codes: locked for ``retry_after`` seconds (sent as Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("mfa_locked")
        self.retry_after = retry_after
        self._headers = {"Retry-After": str(retry_after)}


class Lockout:
    def __init__(self, policy: MfaPolicy) -> None:
        self.policy = policy

    async def fail(
        self, db: AsyncSession, user: User, challenge_id: str | None, meta: RequestMeta
    ) -> bool:
        """Record a wrong code; True when that locks MFA for the user."""
        db.add(MfaFailure(user_id=user.id))
        if challenge_id is not None:
            await db.execute(
                update(MfaChallenge)
                .where(MfaChallenge.id == challenge_id)
                .values(failures=MfaChallenge.failures + 1)
                .execution_options(synchronize_session=False)
            )
        await db.flush()
        failures = await self.recent_failures(db, user.id)
        await audit.record(db, audit.MFA_FAILED, meta, user_id=user.id, failures=len(failures))
        if len(failures) >= self.policy.max_failures:
            if len(failures) == self.policy.max_failures:
                await audit.record(
                    db,
                    audit.MFA_LOCKED,
                    meta,
                    user_id=user.id,
                    minutes=int(self.policy.window.total_seconds() // 60),
                )
            return True
        return False

    async def recent_failures(self, db: AsyncSession, user_id: str) -> list[datetime]:
        since = utcnow() - self.policy.window
        rows = await db.execute(
            select(MfaFailure.created_at)
            .where(MfaFailure.user_id == user_id, MfaFailure.created_at > since)
            .order_by(MfaFailure.created_at)
        )
        return list(rows.scalars())

    async def raise_if_locked(self, db: AsyncSession, user_id: str) -> None:
        failures = await self.recent_failures(db, user_id)
        if len(failures) >= self.policy.max_failures:
            unlock = failures[-self.policy.max_failures] + self.policy.window
            raise MfaLocked(max(1, int((unlock - utcnow()).total_seconds()) + 1))
