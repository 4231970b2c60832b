"""Completing "Sign in with Upwork": code exchange, profile, account, tokens, session.

Everything that talks to Upwork happens before the first database write, and every write
happens in one transaction: a failure leaves no half-created account behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import MfaChallenge, ProfileSync, SyncTrigger, User, UserSession
from ..security import audit
from ..security.audit import RequestMeta
from ..upwork.errors import UpworkError
from ..upwork.gate import priority as gate_priority
from ..upwork.graphql import UpworkGraphQLClient
from ..upwork.oauth import UpworkOAuthClient
from ..upwork.profile import UpworkProfile, parse_profile
from ..upwork.queries import PROFILE, fetch_granted
from ..upwork.sync import (
    apply_profile,
    freelancer_of,
    log_refused,
    organization_id,
    record_profile_change,
    store_freelancer,
)
from ..upwork.vault import TokenVault
from .errors import AuthError
from .mfa import MfaService
from .sessions import SessionService


@dataclass
class SignInResult:
    """A finished sign-in: a session, or (MFA on) a challenge waiting for the code."""

    user: User
    created: bool
    session: UserSession | None = None
    refresh_token: str | None = None
    mfa_challenge: str | None = None  # the cookie value of the pending challenge

    def __repr__(self) -> str:
        return f"SignInResult(user={self.user.id!r}, created={self.created!r})"


#: Sign-in reason codes for what the Upwork client reports.
_SIGNIN_CODES = {"upwork_api_error": "profile_fetch_failed", "invalid_grant": "code_rejected"}


@dataclass
class SignInService:
    """A sign-in, in stages: Upwork's identity (the code for tokens, the profile), the
    account (made or brought up to date, the tokens kept), then MFA when it is on (a
    challenge, completed by :meth:`complete_mfa`), then the session. Whichever stage
    finishes the sign-in returns a :class:`SignInResult`, and one piece of HTTP code
    (api/routes/auth.py ``answer_sign_in``) turns it into cookies and a redirect or JSON."""

    db: Database
    oauth: UpworkOAuthClient
    graphql: UpworkGraphQLClient
    vault: TokenVault
    mfa: MfaService
    sessions: SessionService
    #: Where freelancers' portraits may come from (Settings.image_hosts).
    image_hosts: tuple[str, ...]

    async def complete(self, code: str, code_verifier: str, meta: RequestMeta) -> SignInResult:
        try:
            # Sign-ins go first when Upwork's budget is short (upwork/gate.py).
            with gate_priority("signin"):
                tokens = await self.oauth.exchange_code(code, code_verifier)

                async def run(query: str) -> dict[str, Any]:
                    return await self.graphql.execute(
                        tokens.access_token, query, allow_partial=True
                    )

                # Whatever the key's scopes grant: only the user's id is indispensable; a
                # refused email, photo or organization degrades a feature, never the sign-in.
                fetched = await fetch_granted(run, PROFILE)
            profile = parse_profile(fetched.data)
            freelancer = freelancer_of(fetched, self.image_hosts)
        except UpworkError as exc:
            raise AuthError(
                _SIGNIN_CODES.get(exc.code, exc.code), exc.message, exc.upwork_message
            ) from None

        async with self.db.write() as db:
            user, created, changed = await _upsert_user(db, profile, fetched.refused)
            if user.blocked_at is not None:
                raise AuthError("account_blocked")  # rolls back: nothing of this sign-in stays
            changed += await store_freelancer(db, user.id, freelancer)
            await self.vault.store(
                db,
                user.id,
                tokens,
                organization_id=organization_id(fetched.data),
                missing_grants=fetched.refused,
                null_fields=fetched.nulled,
            )
            db.add(
                ProfileSync(
                    user_id=user.id, trigger=SyncTrigger.SIGNIN, succeeded=True, changed=changed
                )
            )
            if created:
                await audit.record(db, audit.ACCOUNT_CREATED, meta, user_id=user.id)
            else:
                await record_profile_change(db, user, changed, SyncTrigger.SIGNIN, meta)
            if user.mfa_enabled:
                # Upwork's tokens are good and kept, but no session until the code is given.
                challenge = await self.mfa.create_challenge(db, user.id)
                await audit.record(db, audit.SIGNIN_MFA_REQUIRED, meta, user_id=user.id)
                return SignInResult(user, created, mfa_challenge=challenge)
            session, refresh = await self.start_session(db, user, meta, method="upwork")
        log_refused(user.id, fetched, SyncTrigger.SIGNIN)
        return SignInResult(user, created, session, refresh)

    async def complete_mfa(
        self, challenge_cookie: str | None, code: str, meta: RequestMeta
    ) -> SignInResult:
        """The MFA stage of a sign-in: the code for the challenge this browser holds (a
        TOTP code or a backup code), then the session. Raises AuthError (or MfaLocked)."""
        challenge = await self.mfa.challenge(challenge_cookie)
        method = await self.mfa.verify(challenge.user_id, code, meta, challenge.id)
        return await self._finish_mfa(challenge, method, meta)

    async def passkey_options(self, challenge_cookie: str | None) -> dict[str, Any]:
        """The MFA stage with a passkey, step one: options for ``navigator.credentials.get``,
        bound to the challenge this browser holds."""
        challenge = await self.mfa.challenge(challenge_cookie)
        return await self.mfa.passkey_assertion_options(
            challenge.user_id, "signin", mfa_challenge_id=challenge.id
        )

    async def complete_mfa_passkey(
        self, challenge_cookie: str | None, credential: dict[str, Any], meta: RequestMeta
    ) -> SignInResult:
        """The MFA stage with a passkey, step two: the browser's assertion, then the
        session. Raises AuthError (or MfaLocked)."""
        challenge = await self.mfa.challenge(challenge_cookie)
        method = await self.mfa.verify_passkey(
            challenge.user_id, credential, meta, challenge_id=challenge.id
        )
        return await self._finish_mfa(challenge, method, meta)

    async def _finish_mfa(
        self, challenge: MfaChallenge, method: str, meta: RequestMeta
    ) -> SignInResult:
        async with self.db.write() as db:
            if not await self.mfa.consume(db, challenge.id):
                raise AuthError("mfa_challenge_missing")
            user = await db.get(User, challenge.user_id)
            if user is None:
                raise AuthError("not_authenticated")
            session, refresh = await self.start_session(db, user, meta, method=f"upwork+{method}")
            # The factor was just proven: this session may change factors for a while.
            await self.mfa.mark_fresh(db, session.id)
        return SignInResult(user, False, session, refresh)

    async def start_session(
        self, db: AsyncSession, user: User, meta: RequestMeta, method: str
    ) -> tuple[UserSession, str]:
        """Create the session that ends a successful sign-in (in the caller's transaction)."""
        session, refresh = await self.sessions.create(db, user.id, meta)
        await audit.record(db, audit.SESSION_CREATED, meta, user_id=user.id, session_id=session.id)
        await audit.record(
            db, audit.SIGNIN_SUCCEEDED, meta, user_id=user.id, session_id=session.id, method=method
        )
        return session, refresh

    async def record_failure(
        self,
        code: str,
        meta: RequestMeta,
        detail: str | None = None,
        upwork_message: str | None = None,
    ) -> None:
        """A ``signin.failed`` record with our reason and, when Upwork said why, its words."""
        extra: dict[str, str] = {"reason": detail} if detail else {}
        if upwork_message:
            extra["upwork_message"] = upwork_message
        async with self.db.write() as db:
            await audit.record(db, audit.SIGNIN_FAILED, meta, reason_code=code, **extra)


async def _upsert_user(
    db: AsyncSession, profile: UpworkProfile, refused: list[str]
) -> tuple[User, bool, list[str]]:
    """One Upwork account is one account here, even when two sign-ins race."""
    query = select(User).where(User.upwork_id == profile.id)
    user = (await db.execute(query)).scalar_one_or_none()
    if user is not None:
        return user, False, apply_profile(user, profile, refused)
    user = User(upwork_id=profile.id)
    apply_profile(user, profile, refused)
    try:
        async with db.begin_nested():
            db.add(user)
    except IntegrityError:
        # The same Upwork user's first sign-in finished in parallel: use that account.
        user = (await db.execute(query)).scalar_one()
        return user, False, apply_profile(user, profile, refused)
    return user, True, []
