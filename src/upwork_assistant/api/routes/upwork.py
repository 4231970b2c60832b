"""The Upwork API routes: /api/upwork/*. Tokens never leave the server.

Reading the profile or the connection counts as using the product: Upwork content older
than the sync interval is fetched again after the answer (never on a timer alone, see
sync.py), and the answer says ``"refreshing"`` meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import BackgroundTasks, Request
from pydantic import BaseModel

from ...db.models import ConnectionStatus, SyncTrigger, UpworkConnection, User
from ...services import Services
from ...upwork.freelancer import FreelancerView
from ...upwork.sync import ProfileSyncService, grants_of
from ..deps import MetaDep, ServicesDep, SignedInRouter, refresh_on_use, signed_in
from ..schemas import ConnectionOut, errors

router = SignedInRouter(prefix="/api/upwork", tags=["upwork"])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def content_json(sync: ProfileSyncService, user: User, refreshing: bool) -> dict[str, Any]:
    """Where the user's Upwork content stands in its 24-hour life."""
    return {
        "state": "refreshing" if refreshing else "fresh",
        "fetched_at": _iso(user.identity_fetched_at),
        "expires_at": _iso(sync.expires_at(user)),
        "email_fetched_at": _iso(user.email_fetched_at),
    }


class ContentOut(BaseModel):
    """Where the user's identity data from Upwork stands in its 24-hour life."""

    state: Literal["fresh", "refreshing"]
    fetched_at: datetime | None
    expires_at: datetime | None
    email_fetched_at: datetime | None


class LastSyncOut(BaseModel):
    trigger: SyncTrigger
    started_at: datetime
    succeeded: bool
    #: What changed: identity fields and, of the freelancer profile, title, rate, skills.
    changed: list[str]
    error: str | None


class ProfileOut(BaseModel):
    """The user's Upwork identity and freelancer profile: Upwork content, kept at most 24
    hours (Upwork's API terms) and fetched again when the user uses the product."""

    upwork_id: str
    nid: str | None
    rid: str | None
    name: str | None
    email: str | None
    photo_url: str | None
    profile_key: str | None
    synced_at: datetime | None
    content: ContentOut
    last_sync: LastSyncOut | None
    #: What clients see of the freelancer on Upwork; see ``state`` and ``unavailable``.
    freelancer: FreelancerView


def content_out(sync: ProfileSyncService, user: User, refreshing: bool) -> ContentOut:
    return ContentOut(**content_json(sync, user, refreshing))


async def profile_out(
    svc: Services, user: User, conn: UpworkConnection | None, refreshing: bool
) -> ProfileOut:
    last = await svc.sync.last_sync(user.id)
    missing = list(conn.missing_grants or []) if conn is not None else []
    return ProfileOut(
        upwork_id=user.upwork_id,
        nid=user.upwork_nid,
        rid=user.upwork_rid,
        name=user.name,
        email=user.email,
        photo_url=user.photo_url,
        profile_key=user.profile_key,
        synced_at=user.profile_synced_at,
        content=content_out(svc.sync, user, refreshing),
        last_sync=None
        if last is None
        else LastSyncOut(
            trigger=last.trigger,
            started_at=last.started_at,
            succeeded=last.succeeded,
            changed=list(last.changed or []),
            error=last.error,
        ),
        freelancer=await svc.sync.freelancer(user.id, missing),
    )


@router.get("/profile", response_model=ProfileOut, responses=errors(401, 429, 503))
async def get_profile(
    request: Request, svc: ServicesDep, background: BackgroundTasks
) -> ProfileOut:
    """The stored Upwork profile (a cache of at most 24 hours), when it was fetched, and
    when it expires; ``content.state`` is ``refreshing`` while it is being fetched again.
    ``freelancer`` is the freelancer profile, with the parts this installation's API key
    does not grant in ``freelancer.unavailable``."""
    principal = await signed_in(request)
    user = principal.user
    conn = await svc.sync.connection(user.id)
    refreshing = refresh_on_use(svc.sync, user, conn, background)
    return await profile_out(svc, user, conn, refreshing)


@router.post(
    "/profile/sync",
    response_model=ProfileOut,
    responses=errors(401, 403, 404, 409, 429, 502, 503),
)
async def sync_profile(request: Request, svc: ServicesDep, meta: MetaDep) -> ProfileOut:
    """Sync the profile from Upwork now; returns the fresh profile. Rate limited per user;
    409 ``upwork_reauth_required`` when the Upwork connection must be restored first."""
    principal = await signed_in(request)
    user = await svc.sync.sync_requested(svc.sync_budget, principal.user.id, meta)
    return await profile_out(svc, user, await svc.sync.connection(user.id), False)


@router.get("/connection", response_model=ConnectionOut, responses=errors(401, 429, 503))
async def connection(
    request: Request, svc: ServicesDep, background: BackgroundTasks
) -> dict[str, Any]:
    """The state of the user's Upwork connection (never the tokens), and which data the
    installation's API key does not grant."""
    principal = await signed_in(request)
    conn = await svc.sync.connection(principal.user.id)
    refreshing = refresh_on_use(svc.sync, principal.user, conn, background)
    return {
        "status": "connected"
        if conn is not None and conn.status == ConnectionStatus.ACTIVE
        else "needs_reauth",
        "access_expires_at": _iso(conn.access_expires_at) if conn else None,
        "refresh_expires_at": _iso(conn.refresh_expires_at) if conn else None,
        "last_refresh_at": _iso(conn.last_refresh_at) if conn else None,
        "organization_id": conn.organization_id if conn else None,
        "grants": grants_of(conn),
        "content": content_json(svc.sync, principal.user, refreshing),
    }
