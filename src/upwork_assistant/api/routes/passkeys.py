"""/api/security/mfa/webauthn/*: passkeys as a second factor. Registration, the list,
renaming, removal and confirming it is you (for changes) are the signed-in user's; the
sign-in's MFA step (``authenticate/*``) belongs to the browser holding the MFA challenge
cookie, before any session exists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ...db.models import WebAuthnCredential
from ..cookies import private_cookie
from ..deps import (
    MetaDep,
    ServicesDep,
    SignedInRouter,
    end_others_if,
    signed_in,
    signin_rate_limit,
)
from ..schemas import (
    FreshOut,
    PasskeyAddBody,
    PasskeyAddedOut,
    PasskeyOut,
    PasskeyRemovedOut,
    PasskeyRenameBody,
    SignedInOut,
    WebAuthnCredentialBody,
    WebAuthnOptionsOut,
    errors,
)
from .auth import answer_sign_in

PREFIX = "/api/security/mfa/webauthn"
router = SignedInRouter(prefix=PREFIX, tags=["passkeys"])
signin_router = APIRouter(
    prefix=PREFIX, tags=["passkeys"], dependencies=[Depends(signin_rate_limit)]
)
#: What a change can answer (403 is CSRF, or ``mfa_reauth_required``).
CHANGE_ERRORS = errors(400, 401, 403, 409, 422, 429, 503)


def passkey_json(row: WebAuthnCredential) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "backed_up": row.backed_up,
    }


@router.get("/credentials", response_model=list[PasskeyOut], responses=errors(401, 429, 503))
async def list_passkeys(request: Request, svc: ServicesDep) -> list[dict[str, Any]]:
    """Your passkeys, oldest first."""
    principal = await signed_in(request)
    return [passkey_json(row) for row in await svc.mfa.passkey_list(principal.user.id)]


@router.post("/register/options", response_model=WebAuthnOptionsOut, responses=CHANGE_ERRORS)
async def register_options(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Start adding a passkey: options for ``navigator.credentials.create``. With MFA on,
    this session must have confirmed a factor in the last five minutes
    (``mfa_reauth_required`` otherwise)."""
    principal = await signed_in(request)
    options = await svc.mfa.passkey_registration_options(
        principal.user.id, principal.session.id, principal.user.display_name or ""
    )
    return {"publicKey": options}


@router.post("/register/verify", response_model=PasskeyAddedOut, responses=CHANGE_ERRORS)
async def register_verify(
    request: Request, body: PasskeyAddBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    """Finish adding the passkey the browser created. The first factor turns MFA on and
    brings 10 backup codes (shown once)."""
    principal = await signed_in(request)
    row, codes = await svc.mfa.add_passkey(
        principal.user.id, principal.session.id, body.name, body.credential, meta
    )
    revoked = await end_others_if(body.revoke_other_sessions, svc, principal, meta, "passkey_added")
    return {
        "passkey": passkey_json(row),
        "mfa_enabled": True,
        "backup_codes": codes,
        "revoked_sessions": revoked,
    }


@router.patch(
    "/credentials/{passkey_id}",
    response_model=PasskeyOut,
    responses=errors(401, 403, 404, 422, 429, 503),
)
async def rename_passkey(
    request: Request, passkey_id: str, body: PasskeyRenameBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, Any]:
    principal = await signed_in(request)
    row = await svc.mfa.rename_passkey(principal.user.id, passkey_id, body.name, meta)
    return passkey_json(row)


@router.delete(
    "/credentials/{passkey_id}",
    response_model=PasskeyRemovedOut,
    responses=errors(401, 403, 404, 422, 429, 503),
)
async def remove_passkey(
    request: Request,
    passkey_id: str,
    svc: ServicesDep,
    meta: MetaDep,
    revoke_other_sessions: bool = Query(False, description="Also sign out your other sessions"),
) -> dict[str, Any]:
    """Remove a passkey (a factor confirmed in the last five minutes needed). Your last
    second factor going turns MFA off."""
    principal = await signed_in(request)
    enabled = await svc.mfa.remove_passkey(
        principal.user.id, principal.session.id, passkey_id, meta
    )
    revoked = await end_others_if(revoke_other_sessions, svc, principal, meta, "passkey_removed")
    return {"mfa_enabled": enabled, "revoked_sessions": revoked}


@router.post("/reauth/options", response_model=WebAuthnOptionsOut, responses=CHANGE_ERRORS)
async def reauth_options(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Confirm it is you with a passkey, step one."""
    principal = await signed_in(request)
    options = await svc.mfa.passkey_assertion_options(
        principal.user.id, "reauth", session_id=principal.session.id
    )
    return {"publicKey": options}


@router.post("/reauth/verify", response_model=FreshOut, responses=CHANGE_ERRORS)
async def reauth_verify(
    request: Request, body: WebAuthnCredentialBody, svc: ServicesDep, meta: MetaDep
) -> dict[str, str]:
    """Confirm it is you with a passkey, step two: factor changes need no confirmation
    for five minutes. Failures count toward the MFA lockout."""
    principal = await signed_in(request)
    await svc.mfa.verify_passkey(
        principal.user.id, body.credential, meta, session_id=principal.session.id
    )
    fresh = await svc.mfa.fresh_until(principal.session.id)
    assert fresh is not None
    return {"fresh_until": fresh.isoformat()}


# ----- the sign-in's MFA step -------------------------------------------------------------


@signin_router.post(
    "/authenticate/options", response_model=WebAuthnOptionsOut, responses=errors(400, 429, 503)
)
async def authenticate_options(request: Request, svc: ServicesDep) -> dict[str, Any]:
    """The MFA step with a passkey, step one: options for ``navigator.credentials.get``
    (from the browser holding the MFA challenge cookie)."""
    options = await svc.signin.passkey_options(request.cookies.get(svc.settings.cookies.mfa))
    return {"publicKey": options}


@signin_router.post(
    "/authenticate/verify", response_model=SignedInOut, responses=errors(400, 422, 429, 503)
)
async def authenticate_verify(
    body: WebAuthnCredentialBody, request: Request, svc: ServicesDep, meta: MetaDep
) -> Response:
    """The MFA step with a passkey, step two: the assertion, then the session (its cookies
    are set; the page goes on to ``/``). Failures count toward the MFA lockout."""
    result = await svc.signin.complete_mfa_passkey(
        request.cookies.get(svc.settings.cookies.mfa), body.credential, meta
    )
    response = answer_sign_in(request, svc, result, None)
    response.delete_cookie(svc.settings.cookies.mfa, path="/", **private_cookie(svc))
    return response
