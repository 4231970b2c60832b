"""/api/security/*: the signed-in user's sessions and two-factor sign-in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete

from ..db.models import User, UserSession
from ..security import audit
from ..security.keys import mac
from .deps import MetaDep, Principal, PrincipalDep, ServicesDep
from .errors import AuthError
from .routes import clear_session_cookies
from .sessions import describe_user_agent

router = APIRouter(prefix="/api/security", tags=["security"])


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


@router.get("/sessions")
async def list_sessions(principal: PrincipalDep, svc: ServicesDep) -> list[dict[str, Any]]:
    """The user's active sessions; the one making this request has ``is_current``."""
    async with svc.db.session() as db:
        sessions = await svc.sessions.list_active(db, principal.user.id)
    return [session_json(s, principal.session.id) for s in sessions]


async def revoke_session(
    svc: ServicesDep, principal: Principal, session_id: str, meta: MetaDep
) -> bool:
    async with svc.db.write() as db:
        revoked = await svc.sessions.revoke(db, session_id, principal.user.id, "user")
        if revoked:
            await audit.record(
                db,
                audit.SESSION_REVOKED,
                meta,
                user_id=principal.user.id,
                session_id=session_id,
                reason="user",
            )
    return revoked


async def revoke_other_sessions(
    svc: ServicesDep,
    principal: Principal,
    meta: MetaDep,
    why: str = "signed_out_elsewhere",
    revoked_reason: str = "user_others",
) -> int:
    """Revoke every session of the user but this one; ``why`` goes to the security log."""
    async with svc.db.write() as db:
        ids = await svc.sessions.revoke_all(
            db, principal.user.id, revoked_reason, keep=principal.session.id
        )
        for session_id in ids:
            await audit.record(
                db,
                audit.SESSION_REVOKED,
                meta,
                user_id=principal.user.id,
                session_id=session_id,
                reason=why,
            )
    return len(ids)


async def end_other_sessions_after_mfa_change(
    svc: ServicesDep, principal: Principal, meta: MetaDep, change: str
) -> int:
    """Revoke every other session of the user after an MFA change they asked it for. Runs
    after the change has committed: a session that signed in before MFA was on (or with a
    code now replaced) should not outlive it when the user says so."""
    return await revoke_other_sessions(svc, principal, meta, f"mfa_{change}", "mfa_changed")


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(
    session_id: str, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> Response:
    """Revoke one of your sessions (404 when it is not yours or already over)."""
    if not await revoke_session(svc, principal, session_id, meta):
        raise AuthError("session_not_found")
    return Response(status_code=204)


@router.delete("/sessions")
async def delete_other_sessions(
    principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, int]:
    """Revoke every session of yours except this one."""
    return {"revoked": await revoke_other_sessions(svc, principal, meta)}


@router.get("/mfa")
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


@router.post("/mfa/setup")
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
    return await end_other_sessions_after_mfa_change(svc, principal, meta, change)


@router.post("/mfa/verify")
async def mfa_verify(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn MFA on with a code from the new secret. Returns 10 backup codes: shown once.
    With ``revoke_other_sessions``, every other session of yours ends too."""
    codes = await svc.mfa.confirm_setup(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "enabled")
    return {"mfa_enabled": True, "backup_codes": codes, "revoked_sessions": revoked}


@router.post("/mfa/disable")
async def mfa_disable(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Turn MFA off (needs a TOTP or backup code). With ``revoke_other_sessions``, every
    other session of yours ends too."""
    await svc.mfa.disable(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "disabled")
    return {"mfa_enabled": False, "revoked_sessions": revoked}


@router.post("/mfa/backup-codes")
async def mfa_backup_codes(
    body: MfaChangeBody, principal: PrincipalDep, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """A new set of backup codes; the old ones stop working. With
    ``revoke_other_sessions``, every other session of yours ends too."""
    codes = await svc.mfa.regenerate_backup_codes(principal.user.id, body.code, meta)
    revoked = await _maybe_end_others(body, svc, principal, meta, "backup_codes")
    return {"backup_codes": codes, "revoked_sessions": revoked}


account_router = APIRouter(tags=["account"])


class DeleteAccountBody(BaseModel):
    code: str | None = Field(
        None, max_length=64, description="A current MFA code (required when MFA is on)"
    )


async def delete_account_of(
    svc: ServicesDep, principal: Principal, code: str | None, meta: MetaDep
) -> None:
    """Deletes the signed-in user's account (a current MFA code first when MFA is on)."""
    user = principal.user
    if user.mfa_enabled:
        if not code:
            raise AuthError("mfa_code_required")
        await svc.mfa.verify(user.id, code, meta)
    async with svc.db.write() as db:
        anonymised = await audit.anonymise_user(db, user.id)
        await audit.record(
            db,
            audit.ACCOUNT_DELETED,
            None,
            subject=mac(svc.keys.audit_chain, f"subject:{user.id}")[:16],
            anonymised_records=anonymised,
        )
        # The database cascades to tokens, sessions, MFA data and sync records.
        await db.execute(delete(User).where(User.id == user.id))
    if svc.db.engine.dialect.name == "sqlite":
        # secure_delete zeroes the freed pages, but the WAL still holds earlier copies of
        # them until it is checkpointed and truncated. Outside any transaction; if readers
        # keep it busy, the next checkpoint finishes the job.
        async with svc.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@account_router.delete("/api/account")
async def delete_account(
    principal: PrincipalDep,
    svc: ServicesDep,
    meta: MetaDep,
    body: DeleteAccountBody | None = None,
) -> Response:
    """Delete your account: Upwork tokens, profile, sessions and MFA data go; the security
    log keeps only anonymised records. Needs a fresh MFA code when MFA is on. Signing in with
    Upwork again later creates a new account."""
    await delete_account_of(svc, principal, body.code if body else None, meta)
    response = JSONResponse({"deleted": True})
    clear_session_cookies(response, svc)
    return response
