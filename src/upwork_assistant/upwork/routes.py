"""The Upwork API routes: /api/upwork/*. Tokens never leave the server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ..auth.deps import MetaDep, PrincipalDep, ServicesDep
from ..db.models import ProfileSync, UpworkConnection, User
from ..security.ratelimit import RateLimitExceeded
from .vault import ACTIVE

router = APIRouter(prefix="/api/upwork", tags=["upwork"])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def profile_json(user: User, last: ProfileSync | None) -> dict[str, Any]:
    return {
        "upwork_id": user.upwork_id,
        "nid": user.upwork_nid,
        "rid": user.upwork_rid,
        "name": user.name,
        "email": user.email,
        "synced_at": _iso(user.profile_synced_at),
        "last_sync": None
        if last is None
        else {
            "trigger": last.trigger,
            "started_at": _iso(last.started_at),
            "succeeded": last.succeeded,
            "changed": last.changed,
            "error": last.error,
        },
    }


async def last_sync(svc: ServicesDep, user_id: str) -> ProfileSync | None:
    async with svc.db.session() as db:
        return (
            await db.execute(
                select(ProfileSync)
                .where(ProfileSync.user_id == user_id)
                .order_by(ProfileSync.started_at.desc(), ProfileSync.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()


@router.get("/profile")
async def get_profile(principal: PrincipalDep, svc: ServicesDep) -> dict[str, Any]:
    """The stored Upwork profile and when it was last synced."""
    return profile_json(principal.user, await last_sync(svc, principal.user.id))


async def sync_now(svc: ServicesDep, user_id: str, meta: MetaDep) -> User:
    """A sync the user asked for: within the per-user budget (RateLimitExceeded beyond it),
    then from Upwork (UpworkError when that fails)."""
    retry_after = await svc.sync_budget.hit(user_id)
    if retry_after:
        raise RateLimitExceeded(retry_after, "Too many sync requests. Please wait a moment.")
    return await svc.sync.sync(user_id, "manual", meta)


@router.post("/profile/sync")
async def sync_profile(principal: PrincipalDep, svc: ServicesDep, meta: MetaDep) -> dict[str, Any]:
    """Sync the profile from Upwork now; returns the fresh profile. Rate limited per user;
    409 ``upwork_reauth_required`` when the Upwork connection must be restored first."""
    user = await sync_now(svc, principal.user.id, meta)
    return profile_json(user, await last_sync(svc, user.id))


@router.get("/connection")
async def connection(principal: PrincipalDep, svc: ServicesDep) -> JSONResponse:
    """The state of the user's Upwork connection (never the tokens)."""
    async with svc.db.session() as db:
        conn = await db.get(UpworkConnection, principal.user.id)
    if conn is None:
        return JSONResponse(
            {
                "status": "needs_reauth",
                "access_expires_at": None,
                "refresh_expires_at": None,
                "last_refresh_at": None,
                "organization_id": None,
            }
        )
    return JSONResponse(
        {
            "status": "connected" if conn.status == ACTIVE else "needs_reauth",
            "access_expires_at": _iso(conn.access_expires_at),
            "refresh_expires_at": _iso(conn.refresh_expires_at),
            "last_refresh_at": _iso(conn.last_refresh_at),
            "organization_id": conn.organization_id,
        }
    )
