"""Security log and administration: /api/security/logs and /api/admin/*."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlalchemy import func, or_, select

from ..auth.deps import AdminDep, MetaDep, PrincipalDep, ServicesDep
from ..auth.errors import AuthError
from ..db.models import AuditEvent, UpworkConnection, User, UserSession
from ..db.types import utcnow
from ..services import Services
from . import audit
from .audit import RequestMeta

router = APIRouter(tags=["security"])

Limit = Annotated[int, Query(ge=1, le=200)]
#: Record ids and offsets: well inside every database's integer range.
BigId = Annotated[int | None, Query(ge=1, le=2**62)]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date is out of range") from None


#: A moment with its UTC offset (e.g. 2026-11-27T10:00:00Z), normalised to UTC.
Moment = Annotated[AwareDatetime | None, AfterValidator(_utc)]


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
    svc: Services,
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
    async with svc.db.session() as db:
        rows = list((await db.execute(query)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [event_json(e, with_user) for e in rows],
        "next_before": rows[-1].id if more and rows else None,
    }


@router.get("/api/security/logs")
async def my_logs(
    principal: PrincipalDep,
    svc: ServicesDep,
    type: str | None = Query(None, max_length=64),
    since: Moment = None,
    until: Moment = None,
    before: BigId = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Your own security events, newest first. Page with ``before=<next_before>``."""
    return await query_events(
        svc,
        user_id=principal.user.id,
        event_type=type,
        since=since,
        until=until,
        before=before,
        limit=limit,
        with_user=False,
    )


@router.get("/api/admin/security/logs", tags=["admin"])
async def all_logs(
    _admin: AdminDep,
    svc: ServicesDep,
    user_id: str | None = Query(None, max_length=36),
    type: str | None = Query(None, max_length=64),
    since: Moment = None,
    until: Moment = None,
    before: BigId = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Every security event (admins), filtered by user, type and time."""
    return await query_events(
        svc,
        user_id=user_id,
        event_type=type,
        since=since,
        until=until,
        before=before,
        limit=limit,
        with_user=True,
    )


@router.get("/api/admin/security/stats", tags=["admin"])
async def stats(_admin: AdminDep, svc: ServicesDep) -> dict[str, int]:
    """Users, active sessions, failed sign-ins and MFA lockouts in the last 24 hours, and
    users whose Upwork connection needs re-authorisation."""
    return await security_stats(svc)


async def security_stats(svc: Services) -> dict[str, int]:
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

    async with svc.db.session() as db:
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
                await db.scalar(select(func.count()).select_from(User).where(User.mfa_enabled))
                or 0
            ),
            "signins_24h": await events(audit.SIGNIN_SUCCEEDED),
            "failed_signins_24h": await events(audit.SIGNIN_FAILED),
            "mfa_lockouts_24h": await events(audit.MFA_LOCKED),
            "users_needing_upwork_reauth": int(
                await db.scalar(
                    select(func.count())
                    .select_from(UpworkConnection)
                    .where(UpworkConnection.status == "needs_reauth")
                )
                or 0
            ),
        }


def admin_user_json(user: User, connection_status: str | None) -> dict[str, Any]:
    return {
        "id": user.id,
        "upwork_id": user.upwork_id,
        "name": user.display_name,
        "email": user.email,
        "roles": user.roles,
        "mfa_enabled": user.mfa_enabled,
        "blocked": user.blocked_at is not None,
        "blocked_at": user.blocked_at.isoformat() if user.blocked_at else None,
        "blocked_reason": user.blocked_reason,
        "created_at": user.created_at.isoformat(),
        "upwork_connection": connection_status,
    }


async def search_users(svc: Services, q: str | None, limit: int, offset: int) -> dict[str, Any]:
    query = select(User, UpworkConnection.status).outerjoin(
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
    async with svc.db.session() as db:
        total = int(await db.scalar(count) or 0)
        rows = (
            await db.execute(query.order_by(User.created_at.desc()).limit(limit).offset(offset))
        ).all()
    return {"items": [admin_user_json(u, st) for u, st in rows], "total": total}


@router.get("/api/admin/users", tags=["admin"])
async def list_users(
    _admin: AdminDep,
    svc: ServicesDep,
    q: str | None = Query(None, max_length=200),
    limit: Limit = 50,
    offset: int = Query(0, ge=0, le=2**62),
) -> dict[str, Any]:
    """Users, newest first; ``q`` searches name, email, Upwork id and user id."""
    return await search_users(svc, q, limit, offset)


class BlockBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


async def set_blocked(
    svc: Services, admin: User, user_id: str, reason: str | None, meta: RequestMeta
) -> User:
    """Block (reason given) or unblock a user. Blocking revokes every session at once."""
    if user_id == admin.id and reason is not None:
        raise AuthError("cannot_block_self")
    async with svc.db.write() as db:
        user = await db.get(User, user_id)
        if user is None:
            raise AuthError("user_not_found")
        if reason is not None:
            user.blocked_at = utcnow()
            user.blocked_reason = reason
            revoked = await svc.sessions.revoke_all(db, user.id, "blocked")
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


@router.post("/api/admin/users/{user_id}/block", tags=["admin"])
async def block(
    user_id: str, body: BlockBody, admin: AdminDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Block a user: every session of theirs stops working at once; they cannot sign in."""
    user = await set_blocked(svc, admin.user, user_id, body.reason, meta)
    return admin_user_json(user, None)


@router.post("/api/admin/users/{user_id}/unblock", tags=["admin"])
async def unblock(user_id: str, admin: AdminDep, svc: ServicesDep, meta: MetaDep) -> dict[str, Any]:
    user = await set_blocked(svc, admin.user, user_id, None, meta)
    return admin_user_json(user, None)
