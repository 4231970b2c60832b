"""Our sessions: one row per signed-in client, with an opaque rotating refresh token that
is stored only as a keyed hash.

Refresh token rotation follows RFC 9700 section 4.14: every refresh gives a new refresh
token and remembers the old one's hash. Presenting an old one again means it was copied:
the whole session is revoked. The one exception is a grace window of a few seconds
(``REFRESH_GRACE_SECONDS``) in which the same client racing itself across tabs gets the
very refresh token the first of its requests received. "The same client" means the same
session, user agent and binding cookie (an HttpOnly cookie holding a keyed hash of the
session id, which a thief holding only the refresh token lacks).

No refresh token is ever stored, not even encrypted: the new token is derived from the old
one with a key from ``SECRET_KEY`` (HMAC), so a retry that presents the old token can be
given the same new one again, while a database dump (with or without the key ring) holds
only hashes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Literal

import ua_parser
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import RotatedRefreshToken, SessionEnd, User, UserSession
from ..db.types import utcnow
from ..security.audit import RequestMeta
from ..security.keys import constant_time_equal, mac
from .session_cache import SessionCache
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
        jwt: JWTIssuer,
        grace_seconds: float,
        max_days: int = 90,
        cache: SessionCache | None = None,
    ) -> None:
        self._hash_key = hash_key
        # Independent sub-keys of the hash key: one derives each rotated refresh token from
        # its predecessor, one makes the binding cookie's value.
        self._rotation_key = _subkey(hash_key, b"refresh-token-rotation")
        self._binding_key = _subkey(hash_key, b"session-binding-cookie")
        self.ttl = timedelta(days=ttl_days)
        self.max_age = timedelta(days=max_days)
        self._jwt = jwt
        self.grace = timedelta(seconds=grace_seconds)
        #: Rows of sessions seen recently, trusted only while a change watch runs.
        self.cache = cache if cache is not None else SessionCache()

    def hash_refresh_token(self, token: str) -> str:
        return mac(self._hash_key, token)

    def next_refresh_token(self, session_id: str, token: str) -> str:
        """The token that replaces ``token`` at rotation: a keyed function of it, so a
        retry with ``token`` within the grace window recomputes the same one instead of
        reading it back from storage."""
        return mac(self._rotation_key, f"{session_id}:{token}")

    def binding_for(self, session_id: str) -> str:
        """The value of the session's binding cookie (HttpOnly, path /api/auth)."""
        return mac(self._binding_key, f"binding:{session_id}")

    def bound(self, session_id: str, presented: str | None) -> bool:
        return bool(presented) and constant_time_equal(
            self.binding_for(session_id), presented or ""
        )

    async def find(self, db: AsyncSession, refresh_token: str) -> UserSession | None:
        """The live session a refresh token belongs to (its current token, or one rotated
        away from it): what sign-out ends once the access token has expired."""
        token_hash = self.hash_refresh_token(refresh_token)
        found = await _live(db, UserSession.refresh_token_hash == token_hash)
        if found is None:
            rotated = await db.get(RotatedRefreshToken, token_hash)
            if rotated is not None:
                found = await _live(db, UserSession.id == rotated.session_id)
        return found[0] if found is not None else None

    async def known(self, database: Database, refresh_token: str) -> bool:
        """Whether a refresh token was ever issued for a session still on record, read
        outside any transaction: unknown tokens are refused without a write transaction
        (which SQLite serialises)."""
        token_hash = self.hash_refresh_token(refresh_token)
        current = await database.read_one(
            select(UserSession.id).where(UserSession.refresh_token_hash == token_hash)
        )
        if current is not None:
            return True
        rotated = await database.read_one(
            select(RotatedRefreshToken.session_id).where(
                RotatedRefreshToken.token_hash == token_hash
            )
        )
        return rotated is not None

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
        binding: str | None = None,
    ) -> RefreshOutcome:
        """Rotate ``refresh_token``. ``authorised`` checks the request against the session
        (the CSRF token) before anything changes; ``binding`` is the binding cookie, needed
        only to be given the same token again within the grace window."""
        old_hash = self.hash_refresh_token(refresh_token)
        found = await _live(db, UserSession.refresh_token_hash == old_hash)
        if found is not None:
            session, user = found
            if not authorised(session):
                return RefreshOutcome("forbidden", session, user)
            rotated = await self._rotate(db, session, user, refresh_token, old_hash, meta)
            if rotated is not None:
                return rotated
            # Another request rotated this very token a moment ago: see below.
        return await self._already_rotated(db, refresh_token, old_hash, meta, authorised, binding)

    async def _rotate(
        self,
        db: AsyncSession,
        session: UserSession,
        user: User,
        old_token: str,
        old_hash: str,
        meta: RequestMeta,
    ) -> RefreshOutcome | None:
        now = utcnow()
        new_refresh = self.next_refresh_token(session.id, old_token)
        access, _ = self._jwt.issue(user.id, session.id)
        # Compare-and-swap: of two requests racing with the same token, one wins.
        result = await db.execute(
            update(UserSession)
            .where(UserSession.id == session.id, UserSession.refresh_token_hash == old_hash)
            .values(
                refresh_token_hash=self.hash_refresh_token(new_refresh),
                rotated_at=now,
                # Where earlier versions kept the new pair encrypted: never again.
                grace_kid=None,
                grace_ct=None,
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
        old_token: str,
        old_hash: str,
        meta: RequestMeta,
        authorised: Callable[[UserSession], bool],
        binding: str | None,
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
        # The same client: same user agent and, above all, the session's binding cookie,
        # which travels with the refresh cookie in the browser but not with a copied token.
        same_agent = (meta.user_agent or "")[:512] == (session.user_agent or "")
        same_client = same_agent and self.bound(session.id, binding)
        latest = session.rotated_at is not None and rotated.rotated_at == session.rotated_at
        if latest and same_client and now - rotated.rotated_at <= self.grace:
            new_refresh = self.next_refresh_token(session.id, old_token)
            # Still the session's current token (nothing rotated it further meanwhile).
            if self.hash_refresh_token(new_refresh) == session.refresh_token_hash:
                access, _ = self._jwt.issue(user.id, session.id)
                return RefreshOutcome("grace", session, user, new_refresh, access)
        await self.revoke(db, session.id, user.id, SessionEnd.REFRESH_REUSE)
        return RefreshOutcome("reused", session, user)

    async def active(
        self, database: Database, session_id: str, user_id: str
    ) -> tuple[UserSession, User] | None:
        """The session an access token names, if it is still live and the user's: from
        the cache when a change watch vouches for it (auth/session_cache.py), else one read
        of the session and user rows."""
        cache = self.cache
        cached = cache.lookup(session_id)
        if cached is not None:
            session = cached[0]
            if session.user_id != user_id or session.expires_at <= utcnow():
                return None
            return cached
        started = cache.read_started()
        row = await database.read_one(
            _session_and_user(UserSession.id == session_id, UserSession.user_id == user_id)
        )
        found = _if_live(row)
        if found is not None:
            cache.fill(started, *found)
        return found

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

    async def revoke(
        self, db: AsyncSession, session_id: str, user_id: str, reason: SessionEnd
    ) -> bool:
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
        self, db: AsyncSession, user_id: str, reason: SessionEnd, keep: str | None = None
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


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)
