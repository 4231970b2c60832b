"""Pages: sign-in, the MFA step, the dashboard, security settings, the account and the
admin section, plus the form posts behind them. Every page is rendered in the person's
language (web/i18n.py); forms work without JavaScript."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.cookies import clear_session_cookies, safe_next
from ..api.deps import (
    SIGNED_IN_PAGES,
    AdminDep,
    MetaDep,
    OptionalPrincipalDep,
    PrincipalDep,
    ServicesDep,
    end_others_if,
    refresh_on_use,
    same_origin,
)
from ..auth.errors import REASONS, AuthError, reason
from ..auth.sessions import user_agent_parts
from ..db.models import ConnectionStatus, SyncTrigger
from ..security import audit
from ..security.events import query_events, search_users, security_stats
from ..security.ratelimit import RateLimitExceeded
from ..upwork.errors import UpworkError
from ..upwork.queries import FREELANCER_PARTS
from ..upwork.sync import grants_of
from .i18n import (
    LANG_COOKIE,
    LOCALES,
    N_,
    PREFERENCE_MAX_AGE,
    THEME_COOKIE,
    THEMES,
)
from .render import preferences, render

#: Pages and forms for anybody: the language and theme choice, the MFA step of a sign-in.
public_router = APIRouter(include_in_schema=False)
#: Everything else: a signed-in person's pages and forms (CSRF on every form post).
router = APIRouter(include_in_schema=False, dependencies=SIGNED_IN_PAGES)

#: Messages of the pages' own outcomes (``?notice=``), translated where shown.
NOTICES = {
    "mfa_disabled": N_("Two-factor sign-in is off."),
    "mfa_disabled_others_revoked": N_(
        "Two-factor sign-in is off, and your other sessions are signed out."
    ),
    "mfa_enabled": N_("Two-factor sign-in is on."),
    "mfa_enabled_others_revoked": N_(
        "Two-factor sign-in is on, and your other sessions are signed out."
    ),
    "backup_codes_regenerated": N_("New backup codes: the old ones no longer work."),
    "backup_codes_regenerated_others_revoked": N_(
        "New backup codes: the old ones no longer work, and your other sessions are signed out."
    ),
    "mfa_confirmed": N_("Confirmed: for the next five minutes you can change your second factors."),
    "passkey_added": N_("Your passkey is added."),
    "passkey_added_others_revoked": N_(
        "Your passkey is added, and your other sessions are signed out."
    ),
    "passkey_renamed": N_("The passkey is renamed."),
    "passkey_removed": N_("The passkey is removed."),
    "passkey_removed_others_revoked": N_(
        "The passkey is removed, and your other sessions are signed out."
    ),
    "totp_removed": N_("The authenticator app is removed; your passkeys still sign you in."),
    "totp_removed_others_revoked": N_(
        "The authenticator app is removed, and your other sessions are signed out."
    ),
    "session_revoked": N_("That session is signed out."),
    "others_revoked": N_("All your other sessions are signed out."),
    "synced": N_("Your profile is up to date with Upwork."),
    "account_deleted": N_(
        "Your account is deleted. Signing in with Upwork again creates a new one."
    ),
    "signed_out": N_("You are signed out."),
    "blocked": N_("The user is blocked and signed out everywhere."),
    "unblocked": N_("The user is unblocked."),
}

#: Problems the pages report that are not sign-in reasons (``?error=``).
PAGE_ERRORS = {
    "sync_rate_limited": N_("You synced a moment ago. Please wait a minute and try again."),
    "upwork_reauth_required": N_(
        "Upwork no longer accepts our access. Reconnect Upwork, then sync again."
    ),
    "upwork_api_error": N_("Upwork answered with an error. Please try again in a few minutes."),
    "account_gone": N_("This account no longer exists."),
    "admin_mfa_required": N_(
        "The admin pages need two-factor sign-in: turn it on here first, then open them again."
    ),
    "confirm_required": N_("Tick the box to confirm that you want to delete your account."),
    "invalid_request": N_("Some of what was sent could not be used. Please try again."),
    "passkey_failed": N_("The passkey could not be used. Please try again, or use another way."),
}

#: Why passkeys cannot work on this server (``RelyingParty.problem``), as msgids.
PASSKEY_PROBLEMS = {
    "ip_address": N_(
        "Passkeys are not available on this server: its address is an IP address, and "
        "browsers allow passkeys only on a domain name."
    ),
    "not_https": N_(
        "Passkeys are not available on this server: browsers allow passkeys only over "
        "https (or on localhost)."
    ),
}
#: The longest passkey answer a page form takes (a JSON string from the browser).
CREDENTIAL_MAX = 20_000

#: Security events as a person reads them.
EVENT_LABELS = {
    audit.SIGNIN_SUCCEEDED: N_("Signed in"),
    audit.SIGNIN_FAILED: N_("Sign-in failed"),
    audit.SIGNIN_MFA_REQUIRED: N_("Sign-in waiting for a two-factor code"),
    audit.ACCOUNT_CREATED: N_("Account created"),
    audit.ACCOUNT_DELETED: N_("Account deleted"),
    audit.PROFILE_UPDATED: N_("Profile updated from Upwork"),
    audit.SESSION_CREATED: N_("New session"),
    audit.SESSION_REVOKED: N_("Session signed out"),
    audit.SESSION_REFRESH_REJECTED: N_("Session renewal refused"),
    audit.SESSION_REFRESH_REUSE: N_("Reuse of an old session token: session ended"),
    audit.MFA_ENABLED: N_("Two-factor sign-in turned on"),
    audit.MFA_DISABLED: N_("Two-factor sign-in turned off"),
    audit.MFA_FAILED: N_("Wrong two-factor code"),
    audit.MFA_LOCKED: N_("Two-factor sign-in locked after wrong codes"),
    audit.MFA_CODE_REUSED: N_("Two-factor code used twice"),
    audit.MFA_SECRET_UNREADABLE: N_("Two-factor secret could not be read"),
    audit.AUDIT_ANONYMISED: N_("Records of a deleted account anonymised"),
    audit.MFA_BACKUP_CODE_USED: N_("Backup code used"),
    audit.MFA_BACKUP_CODES_REGENERATED: N_("New backup codes made"),
    audit.MFA_TOTP_REMOVED: N_("Authenticator app removed"),
    audit.MFA_REAUTHENTICATED: N_("Confirmed with a second factor"),
    audit.MFA_PASSKEY_ADDED: N_("Passkey added"),
    audit.MFA_PASSKEY_RENAMED: N_("Passkey renamed"),
    audit.MFA_PASSKEY_REMOVED: N_("Passkey removed"),
    audit.MFA_PASSKEY_USED: N_("Passkey used"),
    audit.MFA_PASSKEY_REFUSED: N_("Passkey refused"),
    audit.MFA_PASSKEY_COUNTER_REGRESSED: N_("Passkey refused as a possible copy"),
    audit.UPWORK_REFRESH_FAILED: N_("Upwork access renewal failed"),
    audit.UPWORK_REAUTH_REQUIRED: N_("Upwork access needs reconnecting"),
    audit.RATE_LIMIT_HIT: N_("Too many requests"),
    audit.USER_BLOCKED: N_("Account blocked by an administrator"),
    audit.USER_UNBLOCKED: N_("Account unblocked by an administrator"),
    audit.USER_ROLE_CHANGED: N_("Role changed"),
    audit.KEY_ROTATION: N_("Keys rotated"),
}

SYNC_TRIGGERS = {
    SyncTrigger.SIGNIN: N_("at sign-in"),
    SyncTrigger.MANUAL: N_("on request"),
    SyncTrigger.SCHEDULED: N_("scheduled"),
    SyncTrigger.STALE: N_("on a visit"),
}


def page_message(code: str | None) -> str | None:
    """The msgid of ``?error=<code>`` (translated by the template)."""
    if not code:
        return None
    if code in PAGE_ERRORS:
        return PAGE_ERRORS[code]
    return reason(code).message if code in REASONS else reason("").message


def _redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _device(user_agent: str | None) -> dict[str, str | None]:
    browser, system = user_agent_parts(user_agent)
    return {"browser": browser, "system": system}


def _events(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in items:
        item["label"] = EVENT_LABELS.get(item["type"])
        item["when"] = datetime.fromisoformat(item["time"])
        item["device"] = _device(item.get("user_agent"))
    return items


# ------------------------------------------------------------------ preferences


@public_router.post("/preferences")
async def set_preferences(
    request: Request,
    svc: ServicesDep,
    lang: str | None = Form(None, max_length=8),
    theme: str | None = Form(None, max_length=8),
    next: str | None = Form(None, max_length=2000),
) -> Response:
    """Language and theme: remembered in cookies for a year. Works without JavaScript;
    the page's script changes the theme in place."""
    if not same_origin(request):
        raise AuthError("forbidden")
    response = _redirect(safe_next(next) or "/")
    options: dict[str, Any] = {
        "max_age": PREFERENCE_MAX_AGE,
        "path": "/",
        "samesite": "lax",
        "secure": svc.settings.cookie_secure,
    }
    if lang in LOCALES:
        response.set_cookie(LANG_COOKIE, lang, **options)
    if theme == "toggle":
        current = preferences(request).theme
        theme = "light" if current == "dark" else "dark"
    if theme in THEMES:
        response.set_cookie(THEME_COOKIE, theme, **options)
    elif theme == "system":
        response.delete_cookie(THEME_COOKIE, path="/")
    return response


# ------------------------------------------------------------------ sign-in and dashboard


@router.get("/", response_class=HTMLResponse)
async def index(
    request: Request,
    background: BackgroundTasks,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    message = page_message(error)
    if principal is None:
        return render(
            request,
            "signin.html",
            {
                "error_message": message,
                "notice": NOTICES.get(notice or "")
                if notice in {"account_deleted", "signed_out"}
                else None,
                # An expired access token with a live session: the page's script refreshes it.
                "try_refresh": svc.settings.cookies.csrf in request.cookies and not error,
            },
        )
    user_id = principal.user.id
    connection = await svc.sync.connection(user_id)
    # After the page is sent: stale Upwork content is fetched again for the next view.
    refreshing = refresh_on_use(svc.sync, principal.user, connection, background)
    events = await query_events(svc.db, user_id=user_id, limit=8, with_user=False)
    grants = grants_of(connection)
    return render(
        request,
        "dashboard.html",
        {
            "user": principal.user,
            "freelancer": await svc.sync.freelancer(user_id, grants["missing_fields"]),
            "connection": connection,
            "connected": connection is not None and connection.status == ConnectionStatus.ACTIVE,
            "refreshing": refreshing,
            "grants": grants,
            # What the key refuses of the account (the profile card says its own part).
            "account_missing": [f for f in grants["missing_features"] if f not in FREELANCER_PARTS],
            "last_sync": await svc.sync.last_sync(user_id),
            "sync_triggers": SYNC_TRIGGERS,
            "events": _events(events["items"]),
            "csrf_token": svc.csrf.token_for(principal.session.id),
            "error_message": message,
            "notice": NOTICES.get(notice or ""),
            "section": "dashboard",
        },
    )


@router.post("/profile/sync")
async def profile_sync(svc: ServicesDep, principal: PrincipalDep, meta: MetaDep) -> Response:
    """ "Sync now" on the dashboard: the same sync as POST /api/upwork/profile/sync."""
    try:
        await svc.sync.sync_requested(svc.sync_budget, principal.user.id, meta)
    except RateLimitExceeded:
        return _redirect("/?error=sync_rate_limited")
    except UpworkError as exc:
        return _redirect(f"/?error={exc.code}")
    return _redirect("/?notice=synced")


@public_router.get("/mfa", response_class=HTMLResponse)
async def mfa_page(request: Request, svc: ServicesDep, error: str | None = None) -> Response:
    """The second step of a sign-in with MFA on: the user's passkey first when they have
    one (the page's script), the code form always (the way without JavaScript)."""
    try:
        challenge = await svc.mfa.challenge(request.cookies.get(svc.settings.cookies.mfa))
    except AuthError as exc:
        return _redirect(f"/?error={exc.code}")
    return render(
        request,
        "mfa.html",
        {
            "error_message": page_message(error),
            "factors": await svc.mfa.factors(challenge.user_id),
            # The sign-in's cookies belong to this address: at the other, sign in again.
            **_passkey_context(svc, "/"),
        },
    )


# ------------------------------------------------------------------ security settings


def _passkey_context(svc: ServicesDep, path: str) -> dict[str, Any]:
    """What a page's passkey part needs: where passkeys work (the relying party's origin:
    a page opened at another one, such as http://127.0.0.1 in development, links there)
    and why they cannot work on this server at all, if so."""
    rp = svc.mfa.passkeys.rp
    return {
        "rp_origin": rp.origin,
        "rp_page": rp.origin + path,
        "passkey_problem": PASSKEY_PROBLEMS.get(rp.problem or "", PASSKEY_PROBLEMS["not_https"])
        if rp.problem
        else None,
    }


async def _security_page(
    request: Request, svc: ServicesDep, principal: PrincipalDep, **extra: object
) -> Response:
    user_id = principal.user.id
    async with svc.db.session() as db:
        sessions = await svc.sessions.list_active(db, user_id)
    factors = await svc.mfa.factors(user_id)
    fresh_until = await svc.mfa.fresh_until(principal.session.id) if factors.any else None
    context: dict[str, Any] = {
        # The user's row is the session cache's, shared with other requests: never
        # changed here; what this page's answer changed comes from `factors`.
        "user": principal.user,
        "mfa_enabled": factors.any,
        "csrf_token": svc.csrf.token_for(principal.session.id),
        "sessions": [
            {
                "row": s,
                "device": _device(s.user_agent),
                "current": s.id == principal.session.id,
            }
            for s in sessions
        ],
        "backup_codes_left": await svc.mfa.backup_codes_left(principal.user.id)
        if principal.user.mfa_enabled
        else 0,
        "setup": None,
        "backup_codes": None,
        "factors": factors,
        "passkeys": await svc.mfa.passkey_list(user_id),
        # Changes to the factors need none while MFA is off, else a recent confirmation.
        "fresh": not factors.any or fresh_until is not None,
        "section": "security",
        **_passkey_context(svc, "/security"),
    }
    context.update(extra)
    return render(request, "security.html", context)


@router.get("/security", response_class=HTMLResponse)
async def security_page(
    request: Request,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    if principal is None:
        return _redirect("/")
    return await _security_page(
        request,
        svc,
        principal,
        error_message=page_message(error),
        notice=NOTICES.get(notice or ""),
    )


def _back(error: AuthError | str, page: str = "/security") -> RedirectResponse:
    code = error if isinstance(error, str) else error.code
    return _redirect(f"{page}?error={code}")


@router.post("/security/mfa/setup", response_class=HTMLResponse)
async def security_mfa_setup(
    request: Request, svc: ServicesDep, principal: PrincipalDep
) -> Response:
    try:
        info = await svc.mfa.begin_setup(
            principal.user.id, principal.user.display_name, principal.session.id
        )
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
    revoke_other_sessions: bool = Form(False),
) -> Response:
    try:
        codes = await svc.mfa.confirm_setup(principal.user.id, code, meta, principal.session.id)
    except AuthError as exc:
        return _back(exc)
    notice = NOTICES["mfa_enabled"]
    if revoke_other_sessions:
        await svc.accounts.end_other_sessions_after_mfa_change(
            principal.user.id, principal.session.id, meta, "enabled"
        )
        notice = NOTICES["mfa_enabled_others_revoked"]
    return await _security_page(request, svc, principal, backup_codes=codes, notice=notice)


@router.post("/security/mfa/backup-codes", response_class=HTMLResponse)
async def security_mfa_backup_codes(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    code: str = Form(max_length=64),
    revoke_other_sessions: bool = Form(False),
) -> Response:
    try:
        codes = await svc.mfa.regenerate_backup_codes(principal.user.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    notice = NOTICES["backup_codes_regenerated"]
    if revoke_other_sessions:
        await svc.accounts.end_other_sessions_after_mfa_change(
            principal.user.id, principal.session.id, meta, "backup_codes"
        )
        notice = NOTICES["backup_codes_regenerated_others_revoked"]
    return await _security_page(request, svc, principal, backup_codes=codes, notice=notice)


@router.post("/security/mfa/disable")
async def security_mfa_disable(
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    code: str = Form(max_length=64),
    revoke_other_sessions: bool = Form(False),
) -> Response:
    try:
        await svc.mfa.disable(principal.user.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    if revoke_other_sessions:
        await svc.accounts.end_other_sessions_after_mfa_change(
            principal.user.id, principal.session.id, meta, "disabled"
        )
        return _redirect("/security?notice=mfa_disabled_others_revoked")
    return _redirect("/security?notice=mfa_disabled")


@router.post("/security/mfa/confirm")
async def security_mfa_confirm(
    svc: ServicesDep, principal: PrincipalDep, meta: MetaDep, code: str = Form(max_length=64)
) -> Response:
    """ "Confirm it's you" with a code or a backup code (a passkey goes through the API):
    changes to the factors are allowed for the next few minutes."""
    try:
        await svc.mfa.reauth_with_code(principal.user.id, principal.session.id, code, meta)
    except AuthError as exc:
        return _back(exc)
    return _redirect("/security?notice=mfa_confirmed#mfa")


@router.post("/security/mfa/remove-app")
async def security_mfa_remove_app(
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    revoke_other_sessions: bool = Form(False),
) -> Response:
    """Remove the authenticator app (a recent confirmation needed); passkeys stay."""
    try:
        still_on = await svc.mfa.remove_totp(principal.user.id, principal.session.id, meta)
    except AuthError as exc:
        return _back(exc)
    change = "totp_removed" if still_on else "disabled"
    await end_others_if(revoke_other_sessions, svc, principal, meta, change)
    notice = "totp_removed" if still_on else "mfa_disabled"
    return _redirect(f"/security?notice={notice}{'_others_revoked' * revoke_other_sessions}")


def _credential(value: str) -> dict[str, Any] | None:
    """The browser's passkey answer (PublicKeyCredential.toJSON) from a form field."""
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


@router.post("/security/passkeys", response_class=HTMLResponse)
async def security_passkey_add(
    request: Request,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    name: str = Form("", max_length=200),
    credential: str = Form("", max_length=CREDENTIAL_MAX),
    revoke_other_sessions: bool = Form(False),
) -> Response:
    """Add the passkey the page's script had the browser create. When it turned MFA on,
    the page shows the backup codes (once), as turning on the authenticator app does."""
    parsed = _credential(credential)
    if parsed is None:
        return _back("passkey_invalid")
    try:
        _row, codes = await svc.mfa.add_passkey(
            principal.user.id, principal.session.id, name, parsed, meta
        )
    except AuthError as exc:
        return _back(exc)
    await end_others_if(revoke_other_sessions, svc, principal, meta, "passkey_added")
    notice = "passkey_added" + "_others_revoked" * revoke_other_sessions
    if not codes:
        return _redirect(f"/security?notice={notice}#passkeys")
    return await _security_page(request, svc, principal, backup_codes=codes, notice=NOTICES[notice])


@router.post("/security/passkeys/{passkey_id}/rename")
async def security_passkey_rename(
    passkey_id: str,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    name: str = Form("", max_length=200),
) -> Response:
    try:
        await svc.mfa.rename_passkey(principal.user.id, passkey_id[:64], name, meta)
    except AuthError as exc:
        return _back(exc)
    return _redirect("/security?notice=passkey_renamed#passkeys")


@router.post("/security/passkeys/{passkey_id}/remove")
async def security_passkey_remove(
    passkey_id: str,
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    revoke_other_sessions: bool = Form(False),
) -> Response:
    """Remove a passkey (a recent confirmation needed); the last factor going turns MFA
    off."""
    try:
        still_on = await svc.mfa.remove_passkey(
            principal.user.id, principal.session.id, passkey_id[:64], meta
        )
    except AuthError as exc:
        return _back(exc)
    change = "passkey_removed" if still_on else "disabled"
    await end_others_if(revoke_other_sessions, svc, principal, meta, change)
    notice = "passkey_removed" if still_on else "mfa_disabled"
    return _redirect(f"/security?notice={notice}{'_others_revoked' * revoke_other_sessions}")


@router.post("/security/sessions/{session_id}/revoke")
async def security_revoke(
    session_id: str, svc: ServicesDep, principal: PrincipalDep, meta: MetaDep
) -> Response:
    if not await svc.accounts.revoke_session(principal.user.id, session_id, meta):
        return _back("session_not_found")
    if session_id == principal.session.id:
        return _redirect("/?notice=signed_out")
    return _redirect("/security?notice=session_revoked")


@router.post("/security/sessions/revoke-others")
async def security_revoke_others(
    svc: ServicesDep, principal: PrincipalDep, meta: MetaDep
) -> Response:
    await svc.accounts.revoke_other_sessions(principal.user.id, principal.session.id, meta)
    return _redirect("/security?notice=others_revoked")


# ------------------------------------------------------------------ account


@router.get("/account", response_class=HTMLResponse)
async def account_page(
    request: Request, svc: ServicesDep, principal: OptionalPrincipalDep, error: str | None = None
) -> Response:
    if principal is None:
        return _redirect("/")
    return render(
        request,
        "account.html",
        {
            "user": principal.user,
            "csrf_token": svc.csrf.token_for(principal.session.id),
            "error_message": page_message(error),
            "section": "account",
        },
    )


@router.post("/account/delete")
async def account_delete(
    svc: ServicesDep,
    principal: PrincipalDep,
    meta: MetaDep,
    confirm: str | None = Form(None, max_length=8),
    code: str | None = Form(None, max_length=64),
) -> Response:
    if confirm != "yes":
        return _back("confirm_required", "/account")
    try:
        await svc.accounts.delete_account(principal.user, code, meta)
    except AuthError as exc:
        return _back(exc, "/account")
    response = _redirect("/?notice=account_deleted")
    clear_session_cookies(response, svc)
    return response


# ------------------------------------------------------------------ admin


def _day(value: str | None, end: bool = False) -> datetime | None:
    """A date from the filter form (YYYY-MM-DD) as the start (or end) of that UTC day."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return None
    moment = datetime.combine(day, time.min, tzinfo=UTC)
    return moment + timedelta(days=1) if end else moment


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(
    request: Request,
    svc: ServicesDep,
    principal: OptionalPrincipalDep,
    q: str | None = None,
    type: str | None = None,
    user_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    before: str | None = None,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    """Administration: statistics, users (search, block, unblock), the security log."""
    if principal is None:
        return _redirect("/")
    if not principal.user.is_admin:
        raise AuthError("forbidden")
    if svc.settings.admin_mfa_required and not principal.user.mfa_enabled:
        # ADMIN_REQUIRE_MFA, as the admin API and forms enforce it (`_check_admin`); the page
        # sends the admin to where MFA is turned on rather than to a bare 403.
        return _back("admin_mfa_required")
    users = await search_users(svc.db, (q or "")[:200] or None, 100, 0)
    event_type = type if type in EVENT_LABELS else None
    before_id = int(before) if before and before.isdigit() and len(before) < 19 else None
    start, end = _day(since), _day(until, end=True)
    log = await query_events(
        svc.db,
        user_id=(user_id or "")[:36] or None,
        event_type=event_type,
        since=start,
        until=end,
        before=before_id,
        limit=50,
        with_user=True,
    )
    filters = {
        "type": event_type or "",
        "user_id": (user_id or "")[:36],
        "since": start.date().isoformat() if start else "",
        "until": (end - timedelta(days=1)).date().isoformat() if end else "",
    }
    return render(
        request,
        "admin.html",
        {
            "user": principal.user,
            "csrf_token": svc.csrf.token_for(principal.session.id),
            "stats": await security_stats(svc.db),
            "users": users["items"],
            "total": users["total"],
            "q": q or "",
            "events": _events(log["items"]),
            "next_before": log["next_before"],
            "filters": filters,
            "event_labels": EVENT_LABELS,
            "error_message": page_message(error),
            "notice": NOTICES.get(notice or "") if notice in {"blocked", "unblocked"} else None,
            "section": "admin",
        },
    )


@router.post("/admin/users/{user_id}/block")
async def admin_block(
    user_id: str,
    svc: ServicesDep,
    admin: AdminDep,
    meta: MetaDep,
    reason: str = Form(min_length=1, max_length=500),
) -> Response:
    try:
        await svc.accounts.set_blocked(admin.user, user_id, reason, meta)
    except AuthError as exc:
        return _back(exc, "/admin")
    return _redirect("/admin?notice=blocked")


@router.post("/admin/users/{user_id}/unblock")
async def admin_unblock(user_id: str, svc: ServicesDep, admin: AdminDep, meta: MetaDep) -> Response:
    try:
        await svc.accounts.set_blocked(admin.user, user_id, None, meta)
    except AuthError as exc:
        return _back(exc, "/admin")
    return _redirect("/admin?notice=unblocked")
