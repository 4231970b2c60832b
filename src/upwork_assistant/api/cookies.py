"""Our cookies: the session's (access, refresh, binding, CSRF) set after sign-in and
cleared at sign-out, in one place; and the JSON a sign-in answers with."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response

from ..db.models import User, UserSession
from ..services import Services

#: The refresh and binding cookies go only to /api/auth (refresh and sign-out).
REFRESH_PATH = "/api/auth"


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


def binding_cookie(svc: Services) -> str:
    """The session binding cookie's name: beside the refresh cookie (same prefix, path)."""
    return svc.settings.cookies.refresh.replace("refresh_token", "session_binding")


def private_cookie(svc: Services) -> dict[str, Any]:
    """Attributes of our HttpOnly cookies: SameSite=Lax, Secure when served over https."""
    return {"httponly": True, "samesite": "lax", "secure": svc.settings.cookie_secure}


def set_session_cookies(
    response: Response, svc: Services, session: UserSession, access_token: str, refresh_token: str
) -> None:
    session_age = int(svc.sessions.ttl.total_seconds())
    private = private_cookie(svc)
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
    private = private_cookie(svc)
    response.delete_cookie(svc.settings.cookies.access, path="/", **private)
    response.delete_cookie(svc.settings.cookies.refresh, path=REFRESH_PATH, **private)
    response.delete_cookie(binding_cookie(svc), path=REFRESH_PATH, **private)
    response.delete_cookie(svc.settings.cookies.csrf, path="/", **{**private, "httponly": False})


def safe_next(value: str | None) -> str | None:
    """A return-to target: only a same-origin relative path (no open redirects)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return None
    return value
