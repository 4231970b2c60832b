"""Pages: sign-in, the MFA step, the dashboard and the security settings."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from ..auth.account_routes import revoke_other_sessions, revoke_session
from ..auth.deps import AdminDep, MetaDep, OptionalPrincipalDep, PrincipalDep, ServicesDep
from ..auth.errors import REASONS, AuthError, reason
from ..auth.sessions import describe_user_agent
from ..db.models import UpworkConnection
from ..db.types import utcnow
from ..security.routes import search_users, set_blocked
from ..upwork.vault import ACTIVE

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request,
    background: BackgroundTasks,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    error: str | None = None,
) -> Response:
    settings = svc.settings
    message = _error_message(error)
    if principal is None:
        return templates.TemplateResponse(
            request,
            "signin.html",
            {
                "sandbox_mode": settings.sandbox_mode,
                "error_message": message,
                # An expired access token with a live session: the page's script refreshes it.
                "try_refresh": svc.settings.cookies.csrf in request.cookies and not error,
            },
            status_code=200,
        )
    async with svc.db.session() as db:
        connection = (
            await db.execute(
                select(UpworkConnection).where(UpworkConnection.user_id == principal.user.id)
            )
        ).scalar_one_or_none()
    stale = principal.user.profile_synced_at is None or (
        utcnow() - principal.user.profile_synced_at > svc.sync.policy.interval
    )
    if stale and connection is not None and connection.status == ACTIVE:
        # After the page is sent: a stale profile is brought up to date for the next view.
        background.add_task(svc.sync.sync_if_due, principal.user.id, "stale")
    response = templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "sandbox_mode": settings.sandbox_mode,
            "user": principal.user,
            "connection": connection,
            "csrf_token": svc.csrf.token_for(principal.session.id),
            "error_message": message,
        },
    )
    response.headers["Cache-Control"] = "no-store"  # personal data: never cached
    return response


def _error_message(error: str | None) -> str | None:
    if not error:
        return None
    return reason(error).message if error in REASONS else reason("").message


NOTICES = {
    "mfa_disabled": "Two-factor sign-in is off.",
    "session_revoked": "That session is signed out.",
    "others_revoked": "All your other sessions are signed out.",
}


@router.get("/mfa", response_class=HTMLResponse)
async def mfa_page(request: Request, svc: ServicesDep, error: str | None = None) -> Response:
    """The second step of a sign-in with MFA on."""
    try:
        await svc.mfa.challenge(request.cookies.get(svc.settings.cookies.mfa))
    except AuthError as exc:
        return RedirectResponse(f"/?error={exc.code}", status_code=303)
    response = templates.TemplateResponse(
        request,
        "mfa.html",
        {
            "sandbox_mode": svc.settings.sandbox_mode,
            "error_message": _error_message(error),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def _security_page(
    request: Request, svc: ServicesDep, principal: PrincipalDep, **extra: object
) -> Response:
    async with svc.db.session() as db:
        sessions = await svc.sessions.list_active(db, principal.user.id)
    context = {
        "sandbox_mode": svc.settings.sandbox_mode,
        "user": principal.user,
        "csrf_token": svc.csrf.token_for(principal.session.id),
        "sessions": [
            {
                "row": s,
                "device": describe_user_agent(s.user_agent),
                "current": s.id == principal.session.id,
            }
            for s in sessions
        ],
        "backup_codes_left": await svc.mfa.backup_codes_left(principal.user.id)
        if principal.user.mfa_enabled
        else 0,
        "error_message": None,
        "notice": None,
        "setup": None,
        "backup_codes": None,
    }
    context.update(extra)
    response = templates.TemplateResponse(request, "security.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/security", response_class=HTMLResponse)
async def security_page(
    request: Request,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    if principal is None:
        return RedirectResponse("/", status_code=303)
    return await _security_page(
        request,
        svc,
        principal,
        error_message=_error_message(error),
        notice=NOTICES.get(notice or ""),
    )


def _back(error: AuthError) -> RedirectResponse:
    return RedirectResponse(f"/security?error={error.code}", status_code=303)


@router.post("/security/mfa/setup", response_class=HTMLResponse)
async def security_mfa_setup(
    request: Request, svc: ServicesDep, principal: PrincipalDep
) -> Response:
    try:
        info = await svc.mfa.begin_setup(principal.user.id, principal.user.name)
    except AuthError as exc:
        return _back(exc)
    key = " ".join(info.secret[i : i + 4] for i in range(0, len(info.secret), 4))
    return await _security_page(request, svc, principal, setup={"qr_svg": info.qr_svg, "key": key})


@router.post("/security/mfa/verify", response_class=HTMLResponse)
async def security_mfa_verify(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    code: str = Form(max_length=64),
) -> Response:
    try:
        codes = await svc.mfa.confirm_setup(principal.user.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    principal.user.mfa_enabled = True
    return await _security_page(
        request, svc, principal, backup_codes=codes, notice="Two-factor sign-in is on."
    )


@router.post("/security/mfa/backup-codes", response_class=HTMLResponse)
async def security_mfa_backup_codes(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    code: str = Form(max_length=64),
) -> Response:
    try:
        codes = await svc.mfa.regenerate_backup_codes(principal.user.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    return await _security_page(
        request,
        svc,
        principal,
        backup_codes=codes,
        notice="New backup codes: the old ones no longer work.",
    )


@router.post("/security/mfa/disable")
async def security_mfa_disable(
    svc: ServicesDep, principal: PrincipalDep, meta: MetaDep, code: str = Form(max_length=64)
) -> Response:
    try:
        await svc.mfa.disable(principal.user.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    return RedirectResponse("/security?notice=mfa_disabled", status_code=303)


@router.post("/security/sessions/{session_id}/revoke")
async def security_revoke(
    session_id: str, svc: ServicesDep, principal: PrincipalDep, meta: MetaDep
) -> Response:
    if not await revoke_session(svc, principal, session_id, meta):
        return _back(AuthError("session_not_found"))
    if session_id == principal.session.id:
        return RedirectResponse("/", status_code=303)
    return RedirectResponse("/security?notice=session_revoked", status_code=303)


@router.post("/security/sessions/revoke-others")
async def security_revoke_others(
    svc: ServicesDep, principal: PrincipalDep, meta: MetaDep
) -> Response:
    await revoke_other_sessions(svc, principal, meta)
    return RedirectResponse("/security?notice=others_revoked", status_code=303)


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(
    request: Request,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    q: str | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    """A minimal administration page: find users, block and unblock them."""
    if principal is None:
        return RedirectResponse("/", status_code=303)
    if "admin" not in principal.user.roles:
        raise AuthError("forbidden")
    users = await search_users(svc, (q or "")[:200] or None, 100, 0)
    response = templates.TemplateResponse(
        request,
        "admin.html",
        {
            "sandbox_mode": svc.settings.sandbox_mode,
            "user": principal.user,
            "csrf_token": svc.csrf.token_for(principal.session.id),
            "users": users["items"],
            "total": users["total"],
            "q": q or "",
            "error_message": _error_message(error),
            "notice": {
                "blocked": "The user is blocked and signed out everywhere.",
                "unblocked": "The user is unblocked.",
            }.get(notice or ""),
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/admin/users/{user_id}/block")
async def admin_block(
    user_id: str,
    svc: ServicesDep,
    admin: AdminDep,
    meta: MetaDep,
    reason: str = Form(min_length=1, max_length=500),
) -> Response:
    try:
        await set_blocked(svc, admin.user, user_id, reason, meta)
    except AuthError as exc:
        return RedirectResponse(f"/admin?error={exc.code}", status_code=303)
    return RedirectResponse("/admin?notice=blocked", status_code=303)


@router.post("/admin/users/{user_id}/unblock")
async def admin_unblock(user_id: str, svc: ServicesDep, admin: AdminDep, meta: MetaDep) -> Response:
    try:
        await set_blocked(svc, admin.user, user_id, None, meta)
    except AuthError as exc:
        return RedirectResponse(f"/admin?error={exc.code}", status_code=303)
    return RedirectResponse("/admin?notice=unblocked", status_code=303)
