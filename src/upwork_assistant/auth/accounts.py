"""What a user does to their own account and sessions, and what an admin does to users:
ending sessions, deleting the account, blocking. Each writes its security-log records in
the same transaction as the change."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import SessionEnd, User
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..security.keys import mac
from .errors import AuthError
from .mfa import MfaService
from .sessions import SessionService


class AccountService:
    def __init__(
        self, db: Database, sessions: SessionService, mfa: MfaService, audit_key: bytes
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._mfa = mfa
        #: Keys the pseudonymous subject of an account.deleted record.
        self._audit_key = audit_key

    async def revoke_session(self, user_id: str, session_id: str, meta: RequestMeta) -> bool:
        """End one of the user's sessions; False when it is not theirs or already over."""
        async with self._db.write() as db:
            revoked = await self._sessions.revoke(db, session_id, user_id, SessionEnd.USER)
            if revoked:
                await _record_revoked(db, meta, user_id, [session_id], "user")
        return revoked

    async def revoke_other_sessions(
        self,
        user_id: str,
        keep_session_id: str,
        meta: RequestMeta,
        why: str = "signed_out_elsewhere",
        revoked_reason: SessionEnd = SessionEnd.USER_OTHERS,
    ) -> int:
        """End every session of the user but ``keep_session_id``; ``why`` goes to the
        security log. Returns how many ended."""
        async with self._db.write() as db:
            ids = await self._sessions.revoke_all(db, user_id, revoked_reason, keep=keep_session_id)
            await _record_revoked(db, meta, user_id, ids, why)
        return len(ids)

    async def end_other_sessions_after_mfa_change(
        self, user_id: str, keep_session_id: str, meta: RequestMeta, change: str
    ) -> int:
        """After an MFA change the user asked it for (once the change has committed): a
        session that signed in before MFA was on, or with a code now replaced, should not
        outlive it."""
        return await self.revoke_other_sessions(
            user_id, keep_session_id, meta, f"mfa_{change}", SessionEnd.MFA_CHANGED
        )

    async def delete_account(self, user: User, code: str | None, meta: RequestMeta) -> None:
        """Delete the account (a current MFA code first when MFA is on): the database
        cascades to tokens, sessions, MFA data, the freelancer profile and sync records;
        the security log keeps only anonymised records."""
        if user.mfa_enabled:
            if not code:
                raise AuthError("mfa_code_required")
            await self._mfa.verify(user.id, code, meta)
        async with self._db.write() as db:
            anonymised = await audit.anonymise_user(db, user.id)
            await audit.record(
                db,
                audit.ACCOUNT_DELETED,
                None,
                subject=mac(self._audit_key, f"subject:{user.id}")[:16],
                anonymised_records=anonymised,
            )
            await db.execute(delete(User).where(User.id == user.id))
        if self._db.engine.dialect.name == "sqlite":
            # secure_delete zeroes the freed pages, but the WAL still holds earlier copies
            # of them until it is checkpointed and truncated. Outside any transaction; if
            # readers keep it busy, the next checkpoint finishes the job.
            async with self._db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def set_blocked(
        self, admin: User, user_id: str, reason: str | None, meta: RequestMeta
    ) -> User:
        """Block (``reason`` given) or unblock a user. Blocking ends every session at once."""
        if user_id == admin.id and reason is not None:
            raise AuthError("cannot_block_self")
        async with self._db.write() as db:
            user = await db.get(User, user_id)
            if user is None:
                raise AuthError("user_not_found")
            if reason is not None:
                user.blocked_at = utcnow()
                user.blocked_reason = reason
                revoked = await self._sessions.revoke_all(db, user.id, SessionEnd.BLOCKED)
                await audit.record(
                    db,
                    audit.USER_BLOCKED,
                    meta,
                    user_id=user.id,
                    by=admin.id,
                    reason=reason,
                    sessions_revoked=len(revoked),
                )
            else:
                user.blocked_at = None
                user.blocked_reason = None
                await audit.record(db, audit.USER_UNBLOCKED, meta, user_id=user.id, by=admin.id)
        return user


async def _record_revoked(
    db: AsyncSession, meta: RequestMeta, user_id: str, session_ids: list[str], why: str
) -> None:
    for session_id in session_ids:
        await audit.record(
            db, audit.SESSION_REVOKED, meta, user_id=user_id, session_id=session_id, reason=why
        )
