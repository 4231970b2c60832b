"""Our sessions: one row per signed-in client, with an opaque rotating refresh token that
is stored only as a keyed hash.

Refresh token rotation follows RFC 9700 section 4.14: every refresh gives a new refresh
token and remembers the old one's hash. Presenting an old one again means it was copied:
the whole session is revoked. The one exception is a grace window of a few seconds
(``REFRESH_GRACE_SECONDS``) in which the same client (same session, same user agent)
racing itself across tabs gets the very pair the first of its requests received.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Literal

import ua_parser
from sqlalchemy import ColumnElement, Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import RotatedRefreshToken, User, UserSession
from ..db.types import utcnow
from ..security.audit import RequestMeta
from ..security.keys import KeyRing, Sealed, mac
from .tokens import JWTIssuer

#: A session's "last seen" is written at most this often by ordinary requests.
TOUCH_EVERY = timedelta(minutes=5)


@dataclass
class RefreshOutcome:
    kind: Literal["rotated", "grace", "reused", "invalid", "forbidden"]
    session: UserSession | None = None
    user: User | None = None
    refresh_token: str | None = None
    access_token: str | None = None

    def __repr__(self) -> str:
        return f"RefreshOutcome(kind={self.kind!r})"


@lru_cache(maxsize=1024)
def user_agent_parts(user_agent: str | None) -> tuple[str | None, str | None]:
    """(browser, operating system) of a User-Agent, each None when unknown."""
    if not user_agent:
        return None, None
    parsed = ua_parser.parse(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else None
    system = parsed.os.family if parsed.os else None
    if not browser:
        browser = user_agent.split("/", 1)[0][:40] or None
    return browser, (system if system and system != "Other" else None)


def describe_user_agent(user_agent: str | None) -> str:
    """A readable device label, e.g. "Chrome on Linux"."""
    browser, system = user_agent_parts(user_agent)
    if browser and system:
        return f"{browser} on {system}"
    return browser or "Unknown device"


class SessionService:
    def __init__(
        self,
        hash_key: bytes,
        ttl_days: int,
        keyring: KeyRing,
        jwt: JWTIssuer,
        grace_seconds: float,
        max_days: int = 90,
    ) -> None:
        self._hash_key = hash_key
        self.ttl = timedelta(days=ttl_days)
        self.max_age = timedelta(days=max_days)
        self._keyring = keyring
        self._jwt = jwt
        self.grace = timedelta(seconds=grace_seconds)

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

    async def refresh(
        self,
        db: AsyncSession,
        refresh_token: str,
        meta: RequestMeta,
        authorised: Callable[[UserSession], bool],
    ) -> RefreshOutcome:
        """Rotate ``refresh_token``. ``authorised`` checks the request against the session
        (the CSRF token) before anything changes."""
        old_hash = self.hash_refresh_token(refresh_token)
        found = await _live(db, UserSession.refresh_token_hash == old_hash)
        if found is not None:
            session, user = found
            if not authorised(session):
                return RefreshOutcome("forbidden", session, user)
            rotated = await self._rotate(db, session, user, old_hash, meta)
            if rotated is not None:
                return rotated
            # Another request rotated this very token a moment ago: see below.
        return await self._already_rotated(db, old_hash, meta, authorised)

    async def _rotate(
        self, db: AsyncSession, session: UserSession, user: User, old_hash: str, meta: RequestMeta
    ) -> RefreshOutcome | None:
        now = utcnow()
        new_refresh = secrets.token_urlsafe(32)
        access, _ = self._jwt.issue(user.id, session.id)
        pair = self._keyring.encrypt(
            json.dumps({"refresh": new_refresh, "access": access}),
            aad=f"grace:{session.id}:{old_hash}",
        )
        # Compare-and-swap: of two requests racing with the same token, one wins.
        result = await db.execute(
            update(UserSession)
            .where(UserSession.id == session.id, UserSession.refresh_token_hash == old_hash)
            .values(
                refresh_token_hash=self.hash_refresh_token(new_refresh),
                rotated_at=now,
                grace_kid=pair.key_id,
                grace_ct=pair.ciphertext,
                last_seen_at=now,
                # Idle limit, but never past the absolute limit counted from sign-in.
                expires_at=min(now + self.ttl, session.created_at + self.max_age),
                ip=meta.ip,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        db.add(RotatedRefreshToken(token_hash=old_hash, session_id=session.id, rotated_at=now))
        return RefreshOutcome("rotated", session, user, new_refresh, access)

    async def _already_rotated(
        self,
        db: AsyncSession,
        old_hash: str,
        meta: RequestMeta,
        authorised: Callable[[UserSession], bool],
    ) -> RefreshOutcome:
        rotated = await db.get(RotatedRefreshToken, old_hash)
        if rotated is None:
            return RefreshOutcome("invalid")
        found = await _live(db, UserSession.id == rotated.session_id)
        if found is None:
            return RefreshOutcome("invalid")  # the session is over already
        session, user = found
        if not authorised(session):
            return RefreshOutcome("forbidden", session, user)
        now = utcnow()
        same_client = (meta.user_agent or "")[:512] == (session.user_agent or "")
        latest = session.rotated_at is not None and rotated.rotated_at == session.rotated_at
        if (
            latest
            and same_client
            and now - rotated.rotated_at <= self.grace
            and session.grace_kid
            and session.grace_ct
        ):
            pair = json.loads(
                self._keyring.decrypt(
                    Sealed(session.grace_kid, session.grace_ct),
                    aad=f"grace:{session.id}:{old_hash}",
                )
            )
            return RefreshOutcome("grace", session, user, pair["refresh"], pair["access"])
        await self.revoke(db, session.id, user.id, "refresh_reuse")
        return RefreshOutcome("reused", session, user)

    async def active(
        self, database: Database, session_id: str, user_id: str
    ) -> tuple[UserSession, User] | None:
        """The session an access token names, if it is still live and the user's: one
        read of the session and user rows, on every authenticated request."""
        row = await database.read_one(
            _session_and_user(UserSession.id == session_id, UserSession.user_id == user_id)
        )
        return _if_live(row)

    async def touch(self, db: AsyncSession, session: UserSession, meta: RequestMeta) -> None:
        """Record that the session was used (at most every few minutes)."""
        now = utcnow()
        if now - session.last_seen_at < TOUCH_EVERY:
            return
        await db.execute(
            update(UserSession)
            .where(UserSession.id == session.id)
            .values(last_seen_at=now, ip=meta.ip)
            .execution_options(synchronize_session=False)
        )

    async def list_active(self, db: AsyncSession, user_id: str) -> list[UserSession]:
        rows = await db.execute(
            select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
                UserSession.expires_at > utcnow(),
            )
            .order_by(UserSession.last_seen_at.desc())
        )
        return list(rows.scalars())

    async def revoke(self, db: AsyncSession, session_id: str, user_id: str, reason: str) -> bool:
        """Revoke one of ``user_id``'s sessions; False if it is not theirs or not live."""
        result = await db.execute(
            update(UserSession)
            .where(
                UserSession.id == session_id,
                UserSession.user_id == user_id,
                UserSession.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow(), revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_all(
        self, db: AsyncSession, user_id: str, reason: str, keep: str | None = None
    ) -> list[str]:
        """Revoke every live session of the user but ``keep``; returns the revoked ids."""
        query = select(UserSession.id).where(
            UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
        )
        if keep is not None:
            query = query.where(UserSession.id != keep)
        ids = list((await db.execute(query)).scalars())
        if ids:
            await db.execute(
                update(UserSession)
                .where(UserSession.id.in_(ids))
                .values(revoked_at=utcnow(), revoked_reason=reason)
                .execution_options(synchronize_session=False)
            )
        return ids


async def _live(
    db: AsyncSession, *conditions: ColumnElement[bool]
) -> tuple[UserSession, User] | None:
    # The row as committed now, not as this transaction first loaded it: after losing a
    # rotation race (PostgreSQL, READ COMMITTED) the winner's values count.
    statement = _session_and_user(*conditions).execution_options(populate_existing=True)
    return _if_live((await db.execute(statement)).one_or_none())


def _session_and_user(*conditions: ColumnElement[bool]) -> Select[tuple[UserSession, User]]:
    return select(UserSession, User).join(User, User.id == UserSession.user_id).where(*conditions)


def _if_live(row: Row[tuple[UserSession, User]] | None) -> tuple[UserSession, User] | None:
    if row is None:
        return None
    session, user = row
    if session.revoked_at is not None or session.expires_at <= utcnow():
        return None
    return session, user
