"""Our sessions: one row per signed-in client, with an opaque rotating refresh token
that is stored only as a keyed hash."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User, UserSession
from ..db.types import utcnow
from ..security.audit import RequestMeta
from ..security.keys import mac


class SessionService:
    def __init__(self, hash_key: bytes, ttl_days: int) -> None:
        self._hash_key = hash_key
        self.ttl = timedelta(days=ttl_days)

    def hash_refresh_token(self, token: str) -> str:
        return mac(self._hash_key, token)

    async def create(
        self, db: AsyncSession, user_id: str, meta: RequestMeta
    ) -> tuple[UserSession, str]:
        refresh = secrets.token_urlsafe(32)
        now = utcnow()
        session = UserSession(
            user_id=user_id,
            refresh_token_hash=self.hash_refresh_token(refresh),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.ttl,
            ip=meta.ip,
            user_agent=(meta.user_agent or "")[:512] or None,
        )
        db.add(session)
        await db.flush()
        return session, refresh

    async def find_by_refresh_token(
        self, db: AsyncSession, refresh_token: str
    ) -> tuple[UserSession, User] | None:
        """The live session a refresh token belongs to; None if unknown, revoked or expired."""
        return await _live(
            db, UserSession.refresh_token_hash == self.hash_refresh_token(refresh_token)
        )

    async def rotate(
        self, db: AsyncSession, session: UserSession, refresh_token: str, meta: RequestMeta
    ) -> str | None:
        """Replace the session's refresh token; extends its idle expiry. Returns the new
        token, or None when another request rotated the same token first."""
        now = utcnow()
        new = secrets.token_urlsafe(32)
        # Compare-and-swap: of two requests racing with the same token, one wins.
        result = await db.execute(
            update(UserSession)
            .where(
                UserSession.id == session.id,
                UserSession.refresh_token_hash == self.hash_refresh_token(refresh_token),
            )
            .values(
                refresh_token_hash=self.hash_refresh_token(new),
                last_seen_at=now,
                expires_at=now + self.ttl,
                ip=meta.ip,
            )
            .execution_options(synchronize_session=False)
        )
        return new if result.rowcount == 1 else None  # type: ignore[attr-defined]

    async def active(
        self, db: AsyncSession, session_id: str, user_id: str
    ) -> tuple[UserSession, User] | None:
        """The session an access token names, if it is still live and the user's."""
        return await _live(db, UserSession.id == session_id, UserSession.user_id == user_id)

    async def revoke(self, db: AsyncSession, session_id: str) -> bool:
        result = await db.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def _live(
    db: AsyncSession, *conditions: ColumnElement[bool]
) -> tuple[UserSession, User] | None:
    row = (
        await db.execute(
            select(UserSession, User).join(User, User.id == UserSession.user_id).where(*conditions)
        )
    ).one_or_none()
    if row is None:
        return None
    session, user = row
    if session.revoked_at is not None or session.expires_at <= utcnow():
        return None
    return session, user
