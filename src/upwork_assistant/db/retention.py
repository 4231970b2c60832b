"""How long rows live once they are no longer useful, and the deletion the worker runs.

Each period is the row's useful life plus a margin; the security log (its own retention,
AUDIT_RETENTION_DAYS) keeps the history of what happened, so these tables only hold what
the running product needs:

- ended sessions (signed out, revoked or expired) 30 days after they ended, and with
  them their rotated refresh-token hashes; a live session's rotated hashes stay (a replay
  of one of them is how token theft shows), an ended session refuses every token anyway;
- wrong MFA codes after a day (the lockout counts the last 15 minutes);
- MFA challenges and sign-in flows a day after they expired (kept that long so that a
  late or repeated answer gets "expired"/"used" rather than "unknown");
- profile-sync records after 30 days, except each user's latest (the dashboard shows it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from .models import (
    MfaChallenge,
    MfaFailure,
    OAuthFlow,
    ProfileSync,
    RotatedRefreshToken,
    UserSession,
    WebAuthnChallenge,
)

ENDED_SESSIONS = timedelta(days=30)
MFA_FAILURES = timedelta(days=1)
EXPIRED_CHALLENGES = timedelta(days=1)
PROFILE_SYNCS = timedelta(days=30)


async def prune(db: AsyncSession, now: datetime) -> dict[str, int]:
    """Delete what has outlived its use, in the caller's transaction; counts per table."""
    ended = or_(UserSession.revoked_at.is_not(None), UserSession.expires_at < now)
    ended_long_ago = or_(
        UserSession.revoked_at < now - ENDED_SESSIONS,
        UserSession.expires_at < now - ENDED_SESSIONS,
    )
    newer = aliased(ProfileSync)
    newest_of_user = (
        select(func.max(newer.started_at))
        .where(newer.user_id == ProfileSync.user_id)
        .scalar_subquery()
    )
    statements = {
        "rotated_refresh_tokens": delete(RotatedRefreshToken).where(
            RotatedRefreshToken.session_id.in_(select(UserSession.id).where(ended))
        ),
        "sessions": delete(UserSession).where(ended_long_ago),
        "mfa_failures": delete(MfaFailure).where(MfaFailure.created_at < now - MFA_FAILURES),
        "mfa_challenges": delete(MfaChallenge).where(
            MfaChallenge.expires_at < now - EXPIRED_CHALLENGES
        ),
        # (The webauthn rows of a pruned MFA challenge or session go with it: ON DELETE
        # CASCADE.)
        "webauthn_challenges": delete(WebAuthnChallenge).where(
            WebAuthnChallenge.expires_at < now - EXPIRED_CHALLENGES
        ),
        "oauth_flows": delete(OAuthFlow).where(OAuthFlow.expires_at < now - EXPIRED_CHALLENGES),
        "profile_syncs": delete(ProfileSync).where(
            ProfileSync.started_at < now - PROFILE_SYNCS, ProfileSync.started_at < newest_of_user
        ),
    }
    counts = {}
    for table, statement in statements.items():
        result = await db.execute(statement.execution_options(synchronize_session=False))
        counts[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts
