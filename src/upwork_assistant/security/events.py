"""Reading the security log and the user list: the queries behind the security page, the
API's /api/security/logs and the admin section."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from ..db.engine import Database
from ..db.models import (
    AuditEvent,
    ConnectionStatus,
    UpworkConnection,
    User,
    UserSession,
    WebAuthnCredential,
)
from ..db.types import utcnow
from . import audit


def event_json(event: AuditEvent, with_user: bool = False) -> dict[str, Any]:
    item = {
        "id": event.id,
        "time": event.created_at.isoformat(),
        "type": event.event_type,
        "session_id": event.session_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "details": event.details,
    }
    if with_user:
        item["user_id"] = event.user_id
    return item


async def query_events(
    db: Database,
    *,
    user_id: str | None,
    limit: int,
    with_user: bool,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
) -> dict[str, Any]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if event_type:
        query = query.where(AuditEvent.event_type == event_type)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    async with db.session() as session:
        rows = list((await session.execute(query)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [event_json(e, with_user) for e in rows],
        "next_before": rows[-1].id if more and rows else None,
    }


async def security_stats(database: Database) -> dict[str, int]:
    """Users, active sessions, sign-ins, failures and lockouts of the last 24 hours."""
    now = utcnow()
    day_ago = now - timedelta(days=1)

    async def events(kind: str) -> int:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event_type == kind, AuditEvent.created_at >= day_ago)
            )
            or 0
        )

    async with database.session() as db:
        return {
            "users": int(await db.scalar(select(func.count()).select_from(User)) or 0),
            "blocked_users": int(
                await db.scalar(
                    select(func.count()).select_from(User).where(User.blocked_at.is_not(None))
                )
                or 0
            ),
            "active_sessions": int(
                await db.scalar(
                    select(func.count())
                    .select_from(UserSession)
                    .where(UserSession.revoked_at.is_(None), UserSession.expires_at > now)
                )
                or 0
            ),
            "mfa_users": int(
                await db.scalar(select(func.count()).select_from(User).where(User.mfa_enabled)) or 0
            ),
            "signins_24h": await events(audit.SIGNIN_SUCCEEDED),
            "failed_signins_24h": await events(audit.SIGNIN_FAILED),
            "mfa_lockouts_24h": await events(audit.MFA_LOCKED),
            "passkey_users": int(
                await db.scalar(select(func.count(func.distinct(WebAuthnCredential.user_id)))) or 0
            ),
            "passkey_counter_regressions_24h": await events(audit.MFA_PASSKEY_COUNTER_REGRESSED),
            "users_needing_upwork_reauth": int(
                await db.scalar(
                    select(func.count())
                    .select_from(UpworkConnection)
                    .where(UpworkConnection.status == ConnectionStatus.NEEDS_REAUTH)
                )
                or 0
            ),
        }


def admin_user_json(user: User, connection_status: str | None, passkeys: int) -> dict[str, Any]:
    """What an administrator sees of a user: never a secret, a key or a code; of the second
    factors only which kinds are on and how many passkeys."""
    factors = (["totp"] if user.totp_enabled else []) + (["passkey"] if passkeys else [])
    return {
        "id": user.id,
        "upwork_id": user.upwork_id,
        "name": user.display_name,
        "email": user.email,
        "roles": user.roles,
        "mfa_enabled": user.mfa_enabled,
        "mfa_factors": factors,
        "passkeys": passkeys,
        "blocked": user.blocked_at is not None,
        "blocked_at": user.blocked_at.isoformat() if user.blocked_at else None,
        "blocked_reason": user.blocked_reason,
        "created_at": user.created_at.isoformat(),
        "upwork_connection": connection_status,
    }


async def search_users(
    database: Database, q: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """Users, newest first, with their Upwork connection's status; ``q`` searches name,
    email, Upwork id and user id."""
    passkeys = (
        select(func.count())
        .select_from(WebAuthnCredential)
        .where(WebAuthnCredential.user_id == User.id)
        .scalar_subquery()
    )
    query = select(User, UpworkConnection.status, passkeys).outerjoin(
        UpworkConnection, UpworkConnection.user_id == User.id
    )
    count = select(func.count()).select_from(User)
    if q:
        like = f"%{q.lower()}%"
        condition = or_(
            func.lower(User.name).like(like),
            func.lower(User.email).like(like),
            User.upwork_id == q,
            User.id == q,
        )
        query = query.where(condition)
        count = count.where(condition)
    async with database.session() as db:
        total = int(await db.scalar(count) or 0)
        rows = (
            await db.execute(query.order_by(User.created_at.desc()).limit(limit).offset(offset))
        ).all()
    return {"items": [admin_user_json(u, st, int(n or 0)) for u, st, n in rows], "total": total}
