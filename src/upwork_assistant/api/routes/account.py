"""/api/account: the signed-in user's account itself."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..cookies import clear_session_cookies
from ..deps import MetaDep, ServicesDep, SignedInRouter, signed_in
from ..schemas import AccountDeletedOut, errors

router = SignedInRouter(tags=["account"])


class DeleteAccountBody(BaseModel):
    code: str | None = Field(
        None, max_length=64, description="A current MFA code (required when MFA is on)"
    )


@router.delete(
    "/api/account",
    response_model=AccountDeletedOut,
    responses=errors(400, 401, 403, 422, 429, 503),
)
async def delete_account(
    request: Request, svc: ServicesDep, meta: MetaDep, body: DeleteAccountBody | None = None
) -> Response:
    """Delete your account: Upwork tokens, profile, sessions and MFA data go; the security
    log keeps only anonymised records. Needs a fresh MFA code when MFA is on. Signing in with
    Upwork again later creates a new account."""
    principal = await signed_in(request)
    await svc.accounts.delete_account(principal.user, body.code if body else None, meta)
    response = JSONResponse({"deleted": True})
    clear_session_cookies(response, svc)
    return response
