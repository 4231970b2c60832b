"""The security log and administration: /api/security/logs and /api/admin/*."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from ...security.events import (
    admin_user_json,
    query_events,
    search_users,
    security_stats,
)
from ..deps import MetaDep, ServicesDep, SignedInRouter, signed_in
from ..schemas import (
    AdminEventsOut,
    AdminUserOut,
    EventsOut,
    StatsOut,
    UsersOut,
    errors,
)

router = SignedInRouter(tags=["security"])
#: What only admins may do (ADMIN_REQUIRE_MFA: with MFA on).
admin_router = SignedInRouter(tags=["security"], access="admin")

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


@dataclass(frozen=True)
class LogFilters:
    """What a security-log query may be narrowed by (the same for users and admins)."""

    event_type: str | None
    since: datetime | None
    until: datetime | None
    before: int | None
    limit: int

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "since": self.since,
            "until": self.until,
            "before": self.before,
            "limit": self.limit,
        }


async def log_filters(
    type: str | None = Query(None, max_length=64),
    since: Moment = None,
    until: Moment = None,
    before: BigId = None,
    limit: Limit = 50,
) -> LogFilters:
    return LogFilters(type, since, until, before, limit)


LogFiltersDep = Annotated[LogFilters, Depends(log_filters)]


@router.get("/api/security/logs", response_model=EventsOut, responses=errors(401, 422, 429, 503))
async def my_logs(request: Request, svc: ServicesDep, filters: LogFiltersDep) -> dict[str, Any]:
    """Your own security events, newest first. Page with ``before=<next_before>``."""
    principal = await signed_in(request)
    return await query_events(
        svc.db, user_id=principal.user.id, with_user=False, **filters.as_kwargs()
    )


@admin_router.get(
    "/api/admin/security/logs",
    tags=["admin"],
    response_model=AdminEventsOut,
    responses=errors(401, 403, 422, 429, 503),
)
async def all_logs(
    request: Request,
    svc: ServicesDep,
    filters: LogFiltersDep,
    user_id: str | None = Query(None, max_length=36),
) -> dict[str, Any]:
    """Every security event (admins), filtered by user, type and time."""
    return await query_events(svc.db, user_id=user_id, with_user=True, **filters.as_kwargs())


@admin_router.get(
    "/api/admin/security/stats",
    tags=["admin"],
    response_model=StatsOut,
    responses=errors(401, 403, 429, 503),
)
async def stats(request: Request, svc: ServicesDep) -> dict[str, int]:
    """Users, active sessions, failed sign-ins and MFA lockouts in the last 24 hours, and
    users whose Upwork connection needs re-authorisation."""
    return await security_stats(svc.db)


@admin_router.get(
    "/api/admin/users",
    tags=["admin"],
    response_model=UsersOut,
    responses=errors(401, 403, 422, 429, 503),
)
async def list_users(
    request: Request,
    svc: ServicesDep,
    q: str | None = Query(None, max_length=200),
    limit: Limit = 50,
    offset: int = Query(0, ge=0, le=2**62),
) -> dict[str, Any]:
    """Users, newest first; ``q`` searches name, email, Upwork id and user id."""
    return await search_users(svc.db, q, limit, offset)


class BlockBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


@admin_router.post(
    "/api/admin/users/{user_id}/block",
    tags=["admin"],
    response_model=AdminUserOut,
    responses=errors(401, 403, 404, 409, 422, 429, 503),
)
async def block(
    request: Request, user_id: str, body: BlockBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Block a user: every session of theirs stops working at once; they cannot sign in."""
    admin = await signed_in(request)
    user = await svc.accounts.set_blocked(admin.user, user_id, body.reason, meta)
    return admin_user_json(user, None, (await svc.mfa.factors(user.id)).passkeys)


@admin_router.post(
    "/api/admin/users/{user_id}/unblock",
    tags=["admin"],
    response_model=AdminUserOut,
    responses=errors(401, 403, 404, 422, 429, 503),
)
async def unblock(
    request: Request, user_id: str, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    admin = await signed_in(request)
    user = await svc.accounts.set_blocked(admin.user, user_id, None, meta)
    return admin_user_json(user, None, (await svc.mfa.factors(user.id)).passkeys)
