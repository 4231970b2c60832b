"""The sign-in API: /api/auth/* and the JWKS document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from ..db.models import User, UserSession
from ..security import audit
from ..services import Services
from ..upwork.errors import upwork_text
from .deps import (
    ACCESS_FORBIDDEN,
    CSRF_REJECTED,
    MetaDep,
    OptionalPrincipalDep,
    PrincipalDep,
    ServicesDep,
    audit_refusal,
    audit_refusal_quietly,
    is_browser,
    presented_csrf,
    same_origin,
    signin_rate_limit,
)
from .errors import AuthError
from .flow import COOKIE_PATH
from .mfa import MfaLocked
from .signin import complete_sign_in, record_failure, start_session

router = APIRouter()
REFRESH_PATH = "/api/auth"
#: MFA errors after which the /mfa page can simply take another code.
MFA_RETRYABLE = frozenset({"mfa_invalid_code", "mfa_code_format", "mfa_code_reused", "mfa_locked"})


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "upwork_id": user.upwork_id,
        "name": user.display_name,
        "email": user.email,
        "mfa_enabled": user.mfa_enabled,
        "roles": user.roles,
        "profile_synced_at": user.profile_synced_at.isoformat() if user.profile_synced_at else None,
    }


#: Refusals that go to the security log (aggregated per client a minute), by reason code:
#: every AuthError with one of these codes becomes an answer here, wherever it was raised
#: (authenticate's CSRF check, require_admin, the admin page, refresh and sign-out).
AUDITED_REFUSALS = {"csrf_failed": CSRF_REJECTED, "forbidden": ACCESS_FORBIDDEN}


def error_response(request: Request, exc: AuthError) -> Response:
    """A browser goes back to the sign-in page with the reason; an API client gets JSON."""
    response: Response
    if is_browser(request):
        response = RedirectResponse(f"/?error={exc.code}", status_code=303)
    else:
        response = JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)
    event = AUDITED_REFUSALS.get(exc.code)
    if event is not None:
        # Recorded after the answer has gone: a refusal costs the refused no waiting.
        response.background = BackgroundTask(
            audit_refusal_quietly, request, request.app.state.services, event
        )
    return response


def binding_cookie(svc: Services) -> str:
    """The session binding cookie's name: beside the refresh cookie (same prefix, path)."""
    return svc.settings.cookies.refresh.replace("refresh_token", "session_binding")


def _private_cookie(svc: Services) -> dict[str, Any]:
    """Attributes of our HttpOnly cookies: SameSite=Lax, Secure when served over https."""
    return {"httponly": True, "samesite": "lax", "secure": svc.settings.cookie_secure}


def set_session_cookies(
    response: Response, svc: Services, session: UserSession, access_token: str, refresh_token: str
) -> None:
    session_age = int(svc.sessions.ttl.total_seconds())
    private = _private_cookie(svc)
    response.set_cookie(
        svc.settings.cookies.access, access_token, max_age=svc.jwt.ttl, path="/", **private
    )
    response.set_cookie(
        svc.settings.cookies.refresh,
        refresh_token,
        max_age=session_age,
        path=REFRESH_PATH,
        **private,
    )
    # Only this browser holds it: within the grace window it tells a racing tab of ours
    # from someone replaying a copied refresh token (sessions.py).
    response.set_cookie(
        binding_cookie(svc),
        svc.sessions.binding_for(session.id),
        max_age=session_age,
        path=REFRESH_PATH,
        **private,
    )
    # Readable by the page's script, which echoes it in X-CSRF-Token.
    response.set_cookie(
        svc.settings.cookies.csrf,
        svc.csrf.token_for(session.id),
        max_age=session_age,
        path="/",
        **{**private, "httponly": False},
    )


def signed_in_response(
    svc: Services,
    user: User,
    session: UserSession,
    refresh_token: str,
    access_token: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """JSON for an API client: the user and a Bearer access token, plus the cookies."""
    access = access_token or svc.jwt.issue(user.id, session.id)[0]
    response = JSONResponse(
        {
            "user": user_json(user),
            **extra,
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": svc.jwt.ttl,
        }
    )
    set_session_cookies(response, svc, session, access, refresh_token)
    return response


def clear_session_cookies(response: Response, svc: Services) -> None:
    private = _private_cookie(svc)
    response.delete_cookie(svc.settings.cookies.access, path="/", **private)
    response.delete_cookie(svc.settings.cookies.refresh, path=REFRESH_PATH, **private)
    response.delete_cookie(binding_cookie(svc), path=REFRESH_PATH, **private)
    response.delete_cookie(svc.settings.cookies.csrf, path="/", **{**private, "httponly": False})


@router.get("/api/auth/upwork/authorize", tags=["auth"], dependencies=[Depends(signin_rate_limit)])
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
        **_private_cookie(svc),
    )
    return response


@router.get("/api/auth/upwork/callback", tags=["auth"], dependencies=[Depends(signin_rate_limit)])
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
        result = await complete_sign_in(svc, code, verifier, meta)
    except AuthError as exc:
        await record_failure(svc, exc.code, meta, exc.detail, exc.upwork_message)
        response = error_response(request, exc)
    else:
        if result.mfa_challenge is not None:
            response = (
                RedirectResponse("/mfa", status_code=303)
                if is_browser(request)
                else JSONResponse({"mfa_required": True, "created": result.created})
            )
            response.set_cookie(
                svc.settings.cookies.mfa,
                result.mfa_challenge,
                path="/",
                max_age=int(svc.mfa.policy.challenge_ttl.total_seconds()),
                **_private_cookie(svc),
            )
        elif is_browser(request):
            assert result.session is not None and result.refresh_token is not None
            response = RedirectResponse(return_to or "/", status_code=303)
            access, _ = svc.jwt.issue(result.user.id, result.session.id)
            set_session_cookies(response, svc, result.session, access, result.refresh_token)
        else:
            assert result.session is not None and result.refresh_token is not None
            response = signed_in_response(
                svc, result.user, result.session, result.refresh_token, created=result.created
            )
    if cookie_name and cookie_name in request.cookies:
        response.delete_cookie(cookie_name, path=COOKIE_PATH, **_private_cookie(svc))
    return response


@router.get("/api/auth/me", tags=["auth"])
async def me(principal: PrincipalDep) -> dict[str, Any]:
    """The signed-in user (401 when not signed in)."""
    return user_json(principal.user)


@router.post("/api/auth/refresh", tags=["auth"], dependencies=[Depends(signin_rate_limit)])
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


@router.post("/api/auth/mfa", tags=["auth"], dependencies=[Depends(signin_rate_limit)])
async def mfa(request: Request, svc: ServicesDep, meta: MetaDep) -> Response:
    """Finish a sign-in that waits for its second factor: ``{"code"}`` (JSON or form) with a
    TOTP code or a backup code, from the browser that holds the challenge cookie."""
    browser = is_browser(request)
    try:
        code = await _code_from(request)
        challenge = await svc.mfa.challenge(request.cookies.get(svc.settings.cookies.mfa))
        method = await svc.mfa.verify(challenge.user_id, code, meta, challenge.id)
        async with svc.db.write() as db:
            if not await svc.mfa.consume(db, challenge.id):
                raise AuthError("mfa_challenge_missing")
            user = await db.get(User, challenge.user_id)
            assert user is not None
            session, refresh_token = await start_session(
                svc, db, user, meta, method=f"upwork+{method}"
            )
    except AuthError as exc:
        if browser:
            target = "/mfa" if exc.code in MFA_RETRYABLE else "/"
            response: Response = RedirectResponse(f"{target}?error={exc.code}", 303)
        else:
            response = JSONResponse(
                {"error": exc.code, "message": exc.message}, status_code=exc.status
            )
        if isinstance(exc, MfaLocked):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if browser:
        response = RedirectResponse("/", status_code=303)
        access, _ = svc.jwt.issue(user.id, session.id)
        set_session_cookies(response, svc, session, access, refresh_token)
    else:
        response = signed_in_response(svc, user, session, refresh_token)
    response.delete_cookie(svc.settings.cookies.mfa, path="/", **_private_cookie(svc))
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


@router.post("/api/auth/logout", tags=["auth"])
async def logout(
    request: Request, svc: ServicesDep, meta: MetaDep, principal: OptionalPrincipalDep
) -> Response:
    """Sign out: revoke this session and clear the cookies. The session is the access
    token's or, once that has expired, the refresh cookie's (sent to /api/auth). A
    cookie-authenticated sign-out needs the session's CSRF token; one that names no session
    must come from our own origin, so no other site can sign anybody out."""
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
            revoked = await svc.sessions.revoke(db, target[0], target[1], "logout")
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


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(svc: ServicesDep) -> dict[str, Any]:
    """The public keys that verify our access tokens."""
    return svc.jwt.jwks()


def safe_next(value: str | None) -> str | None:
    """A return-to target: only a same-origin relative path (no open redirects)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return None
    return value
