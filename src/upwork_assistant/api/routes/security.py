"""/api/security/*: the signed-in user's sessions and two-factor sign-in."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field

from ...auth.errors import AuthError
from ...auth.sessions import describe_user_agent
from ...db.models import UserSession
from ..deps import MetaDep, ServicesDep, SignedInRouter, end_others_if, signed_in
from ..schemas import (
    BackupCodesOut,
    FreshOut,
    MfaDisabledOut,
    MfaEnabledOut,
    MfaSetupOut,
    MfaStatusOut,
    PasskeyRemovedOut,
    RevokedOut,
    SessionOut,
    errors,
)

router = SignedInRouter(prefix="/api/security", tags=["security"])
#: What a signed-in read can answer; a change (cookie-authenticated) also needs CSRF (403).
READ_ERRORS = errors(401, 429, 503)


class CodeBody(BaseModel):
    code: str = Field(max_length=64, description="A 6-digit TOTP code or a backup code")


class MfaChangeBody(BaseModel):
    code: str = Field(
        max_length=64,
        description='A 6-digit TOTP code or a backup code; or "" when this session '
        "confirmed a factor (``/mfa/reauth``, a passkey) in the last five minutes",
    )
    revoke_other_sessions: bool = Field(
        False,
        description="Also sign out every other session of yours (the answer's "
        "``revoked_sessions`` says how many)",
    )


class MfaVerifyBody(CodeBody):
    """A code from the new authenticator app's secret."""

    revoke_other_sessions: bool = Field(
        False, description="Also sign out every other session of yours"
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
async def list_sessions(request: Request, svc: ServicesDep) -> list[dict[str, Any]]:
    """The user's active sessions; the one making this request has ``is_current``."""
    principal = await signed_in(request)
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
    request: Request, session_id: str, svc: ServicesDep, meta: MetaDep
) -> Response:
    """Revoke one of your sessions (404 when it is not yours or already over)."""
    principal = await signed_in(request)
    if not await svc.accounts.revoke_session(principal.user.id, session_id, meta):
        raise AuthError("session_not_found")
    return Response(status_code=204)


@router.delete("/sessions", response_model=RevokedOut, responses=errors(401, 403, 429, 503))
async def delete_other_sessions(
    request: Request, svc: ServicesDep, meta: MetaDep
) -> dict[str, int]:
    """Revoke every session of yours except this one."""
    principal = await signed_in(request)
    revoked = await svc.accounts.revoke_other_sessions(
        principal.user.id, principal.session.id, meta
    )
    return {"revoked": revoked}


@router.get("/mfa", response_model=MfaStatusOut, responses=READ_ERRORS)
async def mfa_status(request: Request, svc: ServicesDep) -> dict[str, Any]:
    principal = await signed_in(request)
    user = principal.user
    factors = await svc.mfa.factors(user.id)
    fresh = await svc.mfa.fresh_until(principal.session.id)
    return {
        "enabled": user.mfa_enabled,
        "enabled_at": user.mfa_enabled_at.isoformat() if user.mfa_enabled_at else None,
        "backup_codes_left": await svc.mfa.backup_codes_left(user.id) if user.mfa_enabled else 0,
        "totp_enabled": factors.totp,
        "passkeys": factors.passkeys,
        "fresh_until": fresh.isoformat() if fresh else None,
    }


@router.post(
    "/mfa/reauth", response_model=FreshOut, responses=errors(400, 401, 403, 409, 422, 429, 503)
)
async def mfa_reauth(
    request: Request, body: CodeBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, str]:
    """Confirm it is you with a TOTP or backup code: adding or removing a factor needs no
    other confirmation for five minutes (a passkey does the same through
    ``/mfa/webauthn/reauth/*``). Failures count toward the MFA lockout."""
    principal = await signed_in(request)
    fresh = await svc.mfa.reauth_with_code(principal.user.id, principal.session.id, body.code, meta)
    return {"fresh_until": fresh.isoformat()}


@router.post(
    "/mfa/totp/remove",
    response_model=PasskeyRemovedOut,
    responses=errors(401, 403, 409, 422, 429, 503),
)
async def mfa_totp_remove(
    request: Request,
    svc: ServicesDep,
    meta: MetaDep,
    revoke_other_sessions: bool = Query(False, description="Also sign out your other sessions"),
) -> dict[str, Any]:
    """Remove the authenticator app (a factor confirmed in the last five minutes needed).
    Passkeys keep MFA on; without them MFA goes off."""
    principal = await signed_in(request)
    enabled = await svc.mfa.remove_totp(principal.user.id, principal.session.id, meta)
    revoked = await end_others_if(revoke_other_sessions, svc, principal, meta, "totp_removed")
    return {"mfa_enabled": enabled, "revoked_sessions": revoked}


@router.post("/mfa/setup", response_model=MfaSetupOut, responses=errors(401, 403, 409, 429, 503))
async def mfa_setup(request: Request, svc: ServicesDep) -> dict[str, str]:
    """Start adding the authenticator app: a new secret, its otpauth:// URI and a QR code
    (SVG). Not active until ``/mfa/verify`` gets a code from it. With passkeys already on,
    this session must have confirmed a factor in the last five minutes."""
    principal = await signed_in(request)
    info = await svc.mfa.begin_setup(
        principal.user.id, principal.user.display_name, principal.session.id
    )
    return {"secret": info.secret, "otpauth_uri": info.otpauth_uri, "qr_svg": info.qr_svg}


@router.post(
    "/mfa/verify",
    response_model=MfaEnabledOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_verify(
    request: Request, body: MfaVerifyBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn the authenticator app on with a code from the new secret. When this turns MFA
    on, 10 backup codes come back (shown once; empty when passkeys had turned it on). With
    ``revoke_other_sessions``, every other session of yours ends too."""
    principal = await signed_in(request)
    codes = await svc.mfa.confirm_setup(principal.user.id, body.code, meta, principal.session.id)
    revoked = await end_others_if(body.revoke_other_sessions, svc, principal, meta, "enabled")
    return {"mfa_enabled": True, "backup_codes": codes, "revoked_sessions": revoked}


@router.post(
    "/mfa/disable",
    response_model=MfaDisabledOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_disable(
    request: Request, body: MfaChangeBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn MFA off: the authenticator app, every passkey and the backup codes go (needs a
    TOTP or backup code). With ``revoke_other_sessions``, every other session of yours ends
    too."""
    principal = await signed_in(request)
    await svc.mfa.disable(principal.user.id, body.code, meta, principal.session.id)
    revoked = await end_others_if(body.revoke_other_sessions, svc, principal, meta, "disabled")
    return {"mfa_enabled": False, "revoked_sessions": revoked}


@router.post(
    "/mfa/backup-codes",
    response_model=BackupCodesOut,
    responses=errors(400, 401, 403, 409, 422, 429, 503),
)
async def mfa_backup_codes(
    request: Request, body: MfaChangeBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """A new set of backup codes; the old ones stop working. With
    ``revoke_other_sessions``, every other session of yours ends too."""
    principal = await signed_in(request)
    codes = await svc.mfa.regenerate_backup_codes(
        principal.user.id, body.code, meta, principal.session.id
    )
    revoked = await end_others_if(body.revoke_other_sessions, svc, principal, meta, "backup_codes")
    return {"backup_codes": codes, "revoked_sessions": revoked}
