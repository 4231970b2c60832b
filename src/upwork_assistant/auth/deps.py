"""FastAPI dependencies: the app's services, request metadata, and the signed-in user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request

from ..db.models import User, UserSession
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..security.csrf import CSRF_FORM_FIELD, CSRF_HEADER, UNSAFE_METHODS
from ..security.ratelimit import Budget, RateLimitExceeded
from ..services import Services
from .errors import AuthError
from .sessions import TOUCH_EVERY
from .tokens import UnknownKey

# Dependencies are coroutines: FastAPI runs a plain `def` dependency in a worker thread,
# a hand-off that would cost more than the dependency itself on every request.


async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


@dataclass(frozen=True)
class Principal:
    user: User
    session: UserSession
    via_cookie: bool


def is_browser(request: Request) -> bool:
    """A browser navigating (Accept names HTML) rather than an API client."""
    return "text/html" in request.headers.get("accept", "")


async def presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # Plain HTML forms (e.g. the Sign out button) cannot set headers.
        value = (await request.form()).get(CSRF_FORM_FIELD)
        return value if isinstance(value, str) else None
    return None


async def authenticate(request: Request, svc: Services) -> Principal | None:
    """The signed-in user, or None. Raises AuthError(csrf_failed) on an unsafe cookie
    request without the session's CSRF token."""
    header = request.headers.get("authorization", "")
    via_cookie = False
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
    else:
        token = request.cookies.get(svc.settings.cookies.access, "")
        via_cookie = True
    if not token:
        return None
    try:
        claims = svc.jwt.verify(token)
    except UnknownKey:
        # Maybe a key another instance just added: reload (throttled) and try once more.
        await svc.jwt_keys.reload_if_due(force=True)
        try:
            claims = svc.jwt.verify(token)
        except jwt.InvalidTokenError:
            return None
    except jwt.InvalidTokenError:
        return None
    found = await svc.sessions.active(svc.db, claims.session_id, claims.user_id)
    if found is None:
        return None
    session, user = found
    if user.blocked_at is not None:
        return None
    if request.url.path.startswith("/api/"):
        await enforce(svc, svc.api_budget, user.id, request_meta(request), user_id=user.id)
    if utcnow() - session.last_seen_at >= TOUCH_EVERY:
        async with svc.db.write() as db:
            await svc.sessions.touch(db, session, request_meta(request))
    if (
        via_cookie
        and request.method in UNSAFE_METHODS
        and not svc.csrf.valid(session.id, await presented_csrf(request))
    ):
        raise AuthError("csrf_failed")
    return Principal(user, session, via_cookie)


async def optional_principal(
    request: Request, svc: Annotated[Services, Depends(get_services)]
) -> Principal | None:
    return await authenticate(request, svc)


async def require_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    if principal is None:
        raise AuthError("not_authenticated")
    return principal


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if "admin" not in principal.user.roles:
        raise AuthError("forbidden")
    return principal


ServicesDep = Annotated[Services, Depends(get_services)]
AdminDep = Annotated[Principal, Depends(require_admin)]
async def _request_meta(request: Request) -> RequestMeta:
    return request_meta(request)


MetaDep = Annotated[RequestMeta, Depends(_request_meta)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


async def enforce(
    svc: Services, budget: Budget, key: str, meta: RequestMeta, user_id: str | None = None
) -> None:
    """Spend from ``budget`` for ``key``; over the limit, a 429 (audited once a minute)."""
    retry_after = await budget.hit(key)
    if not retry_after:
        return
    if not await svc.rate_limit_audit.hit(f"{budget.name}:{key}"):
        async with svc.db.write() as db:
            await audit.record(db, audit.RATE_LIMIT_HIT, meta, user_id=user_id, limit=budget.name)
    raise RateLimitExceeded(retry_after)


async def signin_rate_limit(
    request: Request, svc: Annotated[Services, Depends(get_services)]
) -> None:
    """Per client IP on the sign-in endpoints."""
    meta = request_meta(request)
    await enforce(svc, svc.signin_budget, meta.ip or "unknown", meta)
