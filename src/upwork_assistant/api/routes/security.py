"""/api/security/*: the signed-in user's sessions and two-factor sign-in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from ...auth.errors import AuthError
from ...auth.sessions import describe_user_agent
from ...db.models import UserSession
from ..deps import SIGNED_IN_API, MetaDep, Principal, PrincipalDep, ServicesDep
from ..schemas import (
    SIGNED_IN_SECURITY,
    BackupCodesOut,
    MfaDisabledOut,
    MfaEnabledOut,
    MfaSetupOut,
    MfaStatusOut,
    RevokedOut,
    SessionOut,
    errors,
)

router = APIRouter(
    prefix="/api/security",
    tags=["security"],
    dependencies=[*SIGNED_IN_API, *SIGNED_IN_SECURITY],
)
#: What a signed-in read can answer; a change (cookie-authenticated) also needs CSRF (403).
READ_ERRORS = errors(401, 429, 503)


class CodeBody(BaseModel):
    code: str = Field(max_length=64, description="A 6-digit TOTP code or a backup code")


class MfaChangeBody(CodeBody):
    revoke_other_sessions: bool = Field(
        False,
        description="Also sign out every other session of yours (the answer's "
        "``revoked_sessions`` says how many)",
    )


def session_json(session: UserSession, current_id: str) -> dict[str, Any]:
    return {
        "id": session.id,
        "created_at": session.created_at.isoformat(),
        "last_seen_at": session.last_seen_at.isoformat(),
        "expires_at": session.expires_at.isoformat(),
        "ip": session.ip,
        "user_agent": session.user_agent,
        "device": describe_user_agent(session.user_agent),
        "is_current": session.id == current_id,
    }


@router.get("/sessions", response_model=list[SessionOut], responses=READ_ERRORS)
async def list_sessions(principal: PrincipalDep, svc: ServicesDep) -> list[dict[str, Any]]:
    """The user's active sessions; the one making this request has ``is_current``."""
    async with svc.db.session() as db:
        sessions = await svc.sessions.list_active(db, principal.user.id)
    return [session_json(s, principal.session.id) for s in sessions]


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "The session was revoked"},
        **errors(401, 403, 404, 422, 429, 503),
    },
)
async def delete_session(
    session_id: str, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> Response:
    """Revoke one of your sessions (404 when it is not yours or already over)."""
    if not await svc.accounts.revoke_session(principal.user.id, session_id, meta):
        raise AuthError("session_not_found")
    return Response(status_code=204)


@router.delete("/sessions", response_model=RevokedOut, responses=errors(401, 403, 429, 503))
async def delete_other_sessions(
    principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, int]:
    """Revoke every session of yours except this one."""
    revoked = await svc.accounts.revoke_other_sessions(
        principal.user.id, principal.session.id, meta
    )
    return {"revoked": revoked}


@router.get("/mfa", response_model=MfaStatusOut, responses=READ_ERRORS)
async def mfa_status(principal: PrincipalDep, svc: ServicesDep) -> dict[str, Any]:
    return {
        "enabled": principal.user.mfa_enabled,
        "enabled_at": principal.user.mfa_enabled_at.isoformat()
        if principal.user.mfa_enabled_at
        else None,
        "backup_codes_left": await svc.mfa.backup_codes_left(principal.user.id)
        if principal.user.mfa_enabled
        else 0,
    }


@router.post("/mfa/setup", response_model=MfaSetupOut, responses=errors(401, 403, 409, 429, 503))
async def mfa_setup(principal: PrincipalDep, svc: ServicesDep) -> dict[str, str]:
    """Start enabling MFA: a new secret, its otpauth:// URI and a QR code (SVG). Not active
    until ``/mfa/verify`` gets a code from it."""
    info = await svc.mfa.begin_setup(principal.user.id, principal.user.display_name)
    return {"secret": info.secret, "otpauth_uri": info.otpauth_uri, "qr_svg": info.qr_svg}


async def _maybe_end_others(
    body: MfaChangeBody, svc: ServicesDep, principal: Principal, meta: MetaDep, change: str
) -> int:
    if not body.revoke_other_sessions:
        return 0
    return await svc.accounts.end_other_sessions_after_mfa_change(
        principal.user.id, principal.session.id, meta, change
    )


@router.post(
    "/mfa/verify",
    response_model=MfaEnabledOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_verify(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn MFA on with a code from the new secret. Returns 10 backup codes: shown once.
    With ``revoke_other_sessions``, every other session of yours ends too."""
    codes = await svc.mfa.confirm_setup(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "enabled")
    return {"mfa_enabled": True, "backup_codes": codes, "revoked_sessions": revoked}


@router.post(
    "/mfa/disable",
    response_model=MfaDisabledOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_disable(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn MFA off (needs a TOTP or backup code). With ``revoke_other_sessions``, every
    other session of yours ends too."""
    await svc.mfa.disable(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "disabled")
    return {"mfa_enabled": False, "revoked_sessions": revoked}


@router.post(
    "/mfa/backup-codes",
    response_model=BackupCodesOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_backup_codes(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """A new set of backup codes; the old ones stop working. With
    ``revoke_other_sessions``, every other session of yours ends too."""
    codes = await svc.mfa.regenerate_backup_codes(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "backup_codes")
    return {"backup_codes": codes, "revoked_sessions": revoked}
