"""The sign-in API: /api/auth/* and the JWKS document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ...auth.errors import AuthError
from ...auth.flow import COOKIE_PATH
from ...auth.signin import SignInResult
from ...db.models import SessionEnd
from ...security import audit
from ...services import Services
from ...upwork.errors import upwork_text
from ..cookies import (
    binding_cookie,
    clear_session_cookies,
    private_cookie,
    safe_next,
    set_session_cookies,
    signed_in_response,
    user_json,
)
from ..deps import (
    MetaDep,
    ServicesDep,
    SignedInRouter,
    audit_refusal,
    current_principal,
    is_browser,
    presented_csrf,
    same_origin,
    signed_in,
    signin_rate_limit,
)
from ..errors import error_json, error_response
from ..schemas import (
    AuthorizeOut,
    JwksOut,
    MfaCodeBody,
    MfaRequiredOut,
    SignedInOut,
    SignedOutOut,
    SignInCompletedOut,
    UserOut,
    errors,
    redirect,
)

router = APIRouter()
#: The routes of a signed-in session (who am I, sign out).
session_router = SignedInRouter()
#: Sign-out: with a session, or (its access token expired) by the refresh cookie alone.
signout_router = SignedInRouter(access="optional")
#: MFA errors after which the /mfa page can simply take another code.
MFA_RETRYABLE = frozenset({"mfa_invalid_code", "mfa_code_format", "mfa_code_reused", "mfa_locked"})


@router.get(
    "/api/auth/upwork/authorize",
    tags=["auth"],
    dependencies=[Depends(signin_rate_limit)],
    response_model=AuthorizeOut,
    responses={
        **redirect(302, "With ``?redirect=true``: to Upwork's authorization page"),
        **errors(422, 429, 503),
    },
)
async def authorize(
    request: Request,
    svc: ServicesDep,
    redirect: bool = False,
    next: str | None = Query(None, max_length=512),
) -> Response:
    """Start "Sign in with Upwork": returns Upwork's authorization URL (or redirects to it
    with ``?redirect=true``) and binds the attempt to this browser with a flow cookie."""
    auth_request = svc.oauth.authorization_request()
    async with svc.db.write() as db:
        name, value = await svc.flows.start(
            db, auth_request.state, auth_request.code_verifier, safe_next(next)
        )
    response: Response
    if redirect:
        response = RedirectResponse(auth_request.url, status_code=302)
    else:
        response = JSONResponse({"authorization_url": auth_request.url})
    response.set_cookie(
        name,
        value,
        max_age=int(svc.flows.ttl.total_seconds()),
        path=COOKIE_PATH,
        **private_cookie(svc),
    )
    return response


@router.get(
    "/api/auth/upwork/callback",
    tags=["auth"],
    dependencies=[Depends(signin_rate_limit)],
    response_model=SignInCompletedOut | MfaRequiredOut,
    responses={
        **redirect(
            303,
            "A browser (``Accept: text/html``): signed in (to the return-to page), to "
            "``/mfa`` for the second factor, or back to ``/?error=<code>``",
        ),
        **errors(400, 403, 422, 429, 502, 503),
    },
)
async def callback(
    request: Request,
    svc: ServicesDep,
    meta: MetaDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    """Upwork sends the browser back here with ``code`` and ``state`` (or ``error``)."""
    cookie_name: str | None = None
    try:
        if not state:
            raise AuthError("state_missing")
        cookie_name = svc.flows.cookie_name(state)
        cookie_value = request.cookies.get(cookie_name)
        if cookie_value is None:
            started_here = any(
                k.startswith(svc.settings.cookies.flow_prefix) for k in request.cookies
            )
            raise AuthError("state_invalid" if started_here else "flow_cookie_missing")
        async with svc.db.write() as db:  # committed before Upwork is called
            verifier, return_to = await svc.flows.consume(db, cookie_value, state)
        if error:
            upwork_error = "".join(c for c in error[:64] if c.isalnum() or c == "_")
            raise AuthError(
                "access_denied" if upwork_error == "access_denied" else "upwork_error",
                f"upwork error: {upwork_error}",
                upwork_text(error_description),  # Upwork's reason (or the URL's, untrusted)
            )
        if not code:
            raise AuthError("code_missing")
        result = await svc.signin.complete(code, verifier, meta)
    except AuthError as exc:
        await svc.signin.record_failure(exc.code, meta, exc.detail, exc.upwork_message)
        response = error_response(request, exc)
    else:
        response = answer_sign_in(request, svc, result, return_to, created=result.created)
    if cookie_name and cookie_name in request.cookies:
        response.delete_cookie(cookie_name, path=COOKIE_PATH, **private_cookie(svc))
    return response


@session_router.get(
    "/api/auth/me", tags=["auth"], response_model=UserOut, responses=errors(401, 429, 503)
)
async def me(request: Request) -> dict[str, Any]:
    """The signed-in user (401 when not signed in)."""
    principal = await signed_in(request)
    return user_json(principal.user)


@router.post(
    "/api/auth/refresh",
    tags=["auth"],
    dependencies=[Depends(signin_rate_limit)],
    response_model=SignedInOut,
    responses={
        **redirect(303, "A browser whose session has ended: back to ``/?error=<code>``"),
        **errors(401, 403, 429, 503),
    },
)
async def refresh(request: Request, svc: ServicesDep, meta: MetaDep) -> Response:
    """Rotate the refresh token (cookie ``refresh_token``) and issue a new access token.
    Needs the session's ``X-CSRF-Token``. A refresh token that was already rotated away
    revokes the whole session (401), except within the short grace window for the same
    client (same session, user agent and binding cookie), which receives the same new
    refresh token again. Rate limited per client IP like the sign-in endpoints."""
    token = request.cookies.get(svc.settings.cookies.refresh)
    if not token:
        raise AuthError("not_authenticated")
    csrf = await presented_csrf(request)
    outcome = None
    # An unknown token is refused on a plain read: a flood of them takes no write
    # transaction and writes at most one aggregated record per client a minute.
    if await svc.sessions.known(svc.db, token):
        async with svc.db.write() as db:
            outcome = await svc.sessions.refresh(
                db,
                token,
                meta,
                authorised=lambda session: svc.csrf.valid(session.id, csrf),
                binding=request.cookies.get(binding_cookie(svc)),
            )
            if outcome.kind == "reused":
                assert outcome.session is not None
                await audit.record(
                    db,
                    audit.SESSION_REFRESH_REUSE,
                    meta,
                    user_id=outcome.session.user_id,
                    session_id=outcome.session.id,
                )
    if outcome is None or outcome.kind == "invalid":
        await audit_refusal(request, svc, audit.SESSION_REFRESH_REJECTED)
    elif outcome.kind == "forbidden":
        assert outcome.session is not None
        request.state.refusal_user_id = outcome.session.user_id
        raise AuthError("csrf_failed")
    if outcome is not None and outcome.kind in ("rotated", "grace"):
        assert outcome.user and outcome.session and outcome.refresh_token
        return signed_in_response(
            svc,
            outcome.user,
            outcome.session,
            outcome.refresh_token,
            access_token=outcome.access_token,
        )
    response = error_response(request, AuthError("session_expired"))
    clear_session_cookies(response, svc)
    return response


#: The body of /api/auth/mfa, read by hand (JSON or an HTML form), documented here.
_MFA_BODY_SCHEMA = MfaCodeBody.model_json_schema()


@router.post(
    "/api/auth/mfa",
    tags=["auth"],
    dependencies=[Depends(signin_rate_limit)],
    response_model=SignedInOut,
    responses={
        **redirect(
            303,
            "A browser: signed in (to ``/``), or back to ``/mfa?error=<code>`` to try "
            "another code (``/?error=<code>`` when the sign-in must start again)",
        ),
        **errors(400, 403, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _MFA_BODY_SCHEMA},
                "application/x-www-form-urlencoded": {"schema": _MFA_BODY_SCHEMA},
            },
        }
    },
)
async def mfa(request: Request, svc: ServicesDep, meta: MetaDep) -> Response:
    """Finish a sign-in that waits for its second factor: ``{"code"}`` (JSON or form) with a
    TOTP code or a backup code, from the browser that holds the challenge cookie."""
    try:
        code = await _code_from(request)
        result = await svc.signin.complete_mfa(
            request.cookies.get(svc.settings.cookies.mfa), code, meta
        )
    except AuthError as exc:
        if is_browser(request):
            target = "/mfa" if exc.code in MFA_RETRYABLE else "/"
            response: Response = RedirectResponse(f"{target}?error={exc.code}", 303)
        else:
            response = error_json(exc.code, exc.message, exc.status, exc.headers)
        return response
    response = answer_sign_in(request, svc, result, None)
    response.delete_cookie(svc.settings.cookies.mfa, path="/", **private_cookie(svc))
    return response


def answer_sign_in(
    request: Request,
    svc: Services,
    result: SignInResult,
    return_to: str | None,
    **extra: Any,
) -> Response:
    """The one answer to a finished sign-in stage. MFA next: the challenge cookie, and a
    browser goes to /mfa (an API client is told so). Signed in: the session's cookies, and a
    browser goes where it was going (``return_to``, else /) while an API client gets the
    user and a Bearer token."""
    if result.mfa_challenge is not None:
        response: Response = (
            RedirectResponse("/mfa", status_code=303)
            if is_browser(request)
            else JSONResponse({"mfa_required": True, **extra})
        )
        response.set_cookie(
            svc.settings.cookies.mfa,
            result.mfa_challenge,
            path="/",
            max_age=int(svc.mfa.policy.challenge_ttl.total_seconds()),
            **private_cookie(svc),
        )
        return response
    assert result.session is not None and result.refresh_token is not None
    if not is_browser(request):
        return signed_in_response(svc, result.user, result.session, result.refresh_token, **extra)
    response = RedirectResponse(return_to or "/", status_code=303)
    access, _ = svc.jwt.issue(result.user.id, result.session.id)
    set_session_cookies(response, svc, result.session, access, result.refresh_token)
    return response


async def _code_from(request: Request) -> str:
    """The ``code`` of a JSON body or an HTML form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise AuthError("mfa_code_format") from None
        code = body.get("code") if isinstance(body, dict) else None
    else:
        code = (await request.form()).get("code")
    if not isinstance(code, str) or len(code) > 64:
        raise AuthError("mfa_code_format")
    return code


@signout_router.post(
    "/api/auth/logout",
    tags=["auth"],
    response_model=SignedOutOut,
    responses={
        **redirect(303, "A browser: to ``/``, signed out"),
        **errors(403, 429, 503),
    },
    # Also without a session (an expired access token: the refresh cookie names it).
    openapi_extra={"security": [{}]},
)
async def logout(request: Request, svc: ServicesDep, meta: MetaDep) -> Response:
    """Sign out: revoke this session and clear the cookies. The session is the access
    token's or, once that has expired, the refresh cookie's (sent to /api/auth). A
    cookie-authenticated sign-out needs the session's CSRF token; one that names no session
    must come from our own origin, so no other site can sign anybody out."""
    principal = await current_principal(request)
    target: tuple[str, str] | None = None  # (session id, user id)
    if principal is not None:  # authenticate checked the CSRF token of a cookie request
        target = principal.session.id, principal.user.id
    else:
        token = request.cookies.get(svc.settings.cookies.refresh)
        session = None
        if token:
            async with svc.db.session() as db:
                session = await svc.sessions.find(db, token)
        if session is not None:
            request.state.refusal_user_id = session.user_id
            if not svc.csrf.valid(session.id, await presented_csrf(request)):
                raise AuthError("csrf_failed")
            target = session.id, session.user_id
        elif not same_origin(request):
            raise AuthError("csrf_failed")
    revoked = False
    if target is not None:
        async with svc.db.write() as db:
            revoked = await svc.sessions.revoke(db, target[0], target[1], SessionEnd.LOGOUT)
            if revoked:
                await audit.record(
                    db,
                    audit.SESSION_REVOKED,
                    meta,
                    user_id=target[1],
                    session_id=target[0],
                    reason="logout",
                )
    response: Response = (
        RedirectResponse("/", status_code=303)
        if is_browser(request)
        else JSONResponse({"signed_out": revoked})
    )
    clear_session_cookies(response, svc)
    # Browsers also drop every cookie of ours they hold (other paths, older names).
    response.headers["Clear-Site-Data"] = '"cookies"'
    return response


@router.get("/.well-known/jwks.json", tags=["auth"], response_model=JwksOut)
async def jwks(svc: ServicesDep) -> dict[str, Any]:
    """The public keys that verify our access tokens."""
    return svc.jwt.jwks()
