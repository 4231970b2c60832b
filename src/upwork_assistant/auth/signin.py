"""Completing "Sign in with Upwork": code exchange, profile, account, tokens, session.

Everything that talks to Upwork happens before the first database write, and every write
happens in one transaction: a failure leaves no half-created account behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User, UserSession
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..services import Services
from ..upwork.errors import UpworkError
from ..upwork.profile import PROFILE_QUERY, UpworkProfile, parse_profile
from .errors import AuthError


@dataclass
class SignInResult:
    user: User
    session: UserSession
    refresh_token: str
    created: bool

    def __repr__(self) -> str:
        return f"SignInResult(user={self.user.id!r}, created={self.created!r})"


async def complete_sign_in(
    svc: Services, code: str, code_verifier: str, meta: RequestMeta
) -> SignInResult:
    try:
        tokens = await svc.oauth.exchange_code(code, code_verifier)
        data = await svc.graphql.query(tokens.access_token, PROFILE_QUERY)
        profile = parse_profile(data)
    except UpworkError as exc:
        raise AuthError(exc.code, exc.message) from None

    async with svc.db.write() as db:
        user, created, changed = await _upsert_user(db, profile)
        await svc.vault.store(db, user.id, tokens)
        session, refresh = await svc.sessions.create(db, user.id, meta)
        if created:
            await audit.record(
                db, audit.ACCOUNT_CREATED, meta, user_id=user.id, upwork_id=user.upwork_id
            )
        elif changed:
            await audit.record(
                db, audit.PROFILE_UPDATED, meta, user_id=user.id, fields=changed, source="sign-in"
            )
        await audit.record(db, audit.SESSION_CREATED, meta, user_id=user.id, session_id=session.id)
        await audit.record(
            db,
            audit.SIGNIN_SUCCEEDED,
            meta,
            user_id=user.id,
            session_id=session.id,
            new_account=created,
        )
    return SignInResult(user, session, refresh, created)


def _apply(user: User, profile: UpworkProfile) -> list[str]:
    changed = []
    for attr, value in (
        ("upwork_nid", profile.nid),
        ("upwork_rid", profile.rid),
        ("name", profile.display_name),
        ("email", profile.email),
    ):
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed.append(attr)
    user.profile_synced_at = utcnow()
    return changed


async def _upsert_user(db: AsyncSession, profile: UpworkProfile) -> tuple[User, bool, list[str]]:
    """One Upwork account is one account here, even when two sign-ins race."""
    query = select(User).where(User.upwork_id == profile.id)
    user = (await db.execute(query)).scalar_one_or_none()
    if user is not None:
        return user, False, _apply(user, profile)
    user = User(upwork_id=profile.id)
    _apply(user, profile)
    try:
        async with db.begin_nested():
            db.add(user)
    except IntegrityError:
        # The same Upwork user's first sign-in finished in parallel: use that account.
        user = (await db.execute(query)).scalar_one()
        return user, False, _apply(user, profile)
    return user, True, []


async def record_failure(
    svc: Services, code: str, meta: RequestMeta, detail: str | None = None
) -> None:
    async with svc.db.write() as db:
        extra = {"reason": detail} if detail else {}
        await audit.record(db, audit.SIGNIN_FAILED, meta, reason_code=code, **extra)
