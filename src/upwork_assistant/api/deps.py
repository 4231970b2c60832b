"""FastAPI dependencies: the app's services, request metadata, and the signed-in user."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response
from fastapi.routing import APIRoute

from ..auth.errors import AuthError
from ..auth.sessions import TOUCH_EVERY
from ..auth.tokens import UnknownKey
from ..config import CALLBACK_PATH, SANDBOX_PREFIX
from ..db.models import UpworkConnection, User, UserSession
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..security.csrf import CSRF_FORM_FIELD, CSRF_HEADER, UNSAFE_METHODS
from ..security.ratelimit import Budget, RateLimitExceeded
from ..services import Services
from ..upwork.sync import ProfileSyncService
from .schemas import SIGNED_IN_OPENAPI

# Dependencies are coroutines: FastAPI runs a plain `def` dependency in a worker thread,
# a hand-off that would cost more than the dependency itself on every request.

log = structlog.get_logger("upwork_assistant")

# Refusals recorded in the security log, at most once a minute per client (see
# `audit_refusal`). session.refresh_rejected is audit.SESSION_REFRESH_REJECTED.
CSRF_REJECTED = "csrf.rejected"
ACCESS_FORBIDDEN = "access.forbidden"
ACCESS_JWT_REJECTED = "access_token.rejected"
#: Seconds a refusal record stands for; the shared `rate_limit_audit` budget is 1/minute.
REFUSAL_WINDOW = 60.0


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


#: API addresses a browser navigates to itself ("Sign in with Upwork", Upwork's return).
BROWSER_API_PATHS = ("/api/auth/upwork/authorize", CALLBACK_PATH)
#: What a browser never is at: the sandbox (an Upwork stand-in), probes and metrics.
_NOT_PAGES = ("/healthz", "/readyz", "/metrics")
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_browser(request: Request) -> bool:
    """The one rule for "a person's browser" (answered with pages and redirects) versus an
    API client (answered with JSON): it asks for HTML, and it is on a page, posting one of
    our pages' forms, or navigating to the sign-in endpoints; never at the sandbox,
    the probes or the metrics."""
    if "text/html" not in request.headers.get("accept", ""):
        return False
    path = request.url.path
    if path.startswith(SANDBOX_PREFIX) or path in _NOT_PAGES:
        return False
    if not path.startswith("/api/"):
        return True
    if path in BROWSER_API_PATHS:
        return request.method == "GET"
    return request.headers.get("content-type", "").startswith(_FORMS)


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
    """Who is calling: the signed-in user and their session, or None. Nothing else: the
    per-user API budget, the last-seen touch and CSRF are the guards' (`api_guard` for
    the API's `SignedInRouter`s, `pages_guard` for the pages' routers)."""
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
        except jwt.InvalidTokenError as exc:
            await _token_refused(request, svc, exc)
            return None
    except jwt.InvalidTokenError as exc:
        await _token_refused(request, svc, exc)
        return None
    found = await svc.sessions.active(svc.db, claims.session_id, claims.user_id)
    if found is None or found[1].blocked_at is not None:
        # Our own token for a session that has ended: worth seeing when it comes in bursts.
        await audit_refusal(request, svc, ACCESS_JWT_REJECTED, reason="session_ended")
        return None
    session, user = found
    # Who made the request, for a refusal recorded after this point (CSRF, admin routes).
    request.state.refusal_user_id = user.id
    return Principal(user, session, via_cookie)


async def _token_refused(request: Request, svc: Services, exc: jwt.InvalidTokenError) -> None:
    # An expired token of ours is routine (a client about to refresh); anything else
    # (a bad signature, wrong claims, garbage, an unknown key) is not.
    if not isinstance(exc, jwt.ExpiredSignatureError):
        await audit_refusal(request, svc, ACCESS_JWT_REJECTED, reason="invalid")


def same_origin(request: Request) -> bool:
    """A browser request from our own pages, or a request from no browser at all: what
    stands in for the CSRF token where no session names one (Fetch Metadata, else Origin;
    browsers send one of them with every cross-site POST)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in {"same-origin", "none"}
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


class RefusalTally:
    """Refusals counted per (event, client) in this process between security-log records,
    so that a flood costs a counter, not a row each (and the audit chain's writers, which
    take turns, stay free). Bounded: the least recently seen clients are dropped first."""

    def __init__(self, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def add(self, key: str) -> int | None:
        """Count one refusal. Returns the count to record when this process has not tried
        to record ``key`` within the window, else None."""
        now = self._clock()
        count, last_try = self._entries.pop(key, (0, now - REFUSAL_WINDOW))
        count += 1
        due = now - last_try >= REFUSAL_WINDOW
        self._entries[key] = (0 if due else count, now if due else last_try)
        if len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return count if due else None

    def put_back(self, key: str, count: int) -> None:
        """Another process recorded this client's refusals this minute: keep ours for
        our next record."""
        held, last_try = self._entries.get(key, (0, self._clock()))
        self._entries[key] = (held + count, last_try)


def _tally(request: Request) -> RefusalTally:
    tally: RefusalTally | None = getattr(request.app.state, "refusal_tally", None)
    if tally is None:
        tally = request.app.state.refusal_tally = RefusalTally()
    return tally


async def audit_refusal(
    request: Request, svc: Services, event_type: str, *, reason: str | None = None
) -> None:
    """Record a refused request in the security log, aggregated: at most one record per
    event, reason and client IP a minute (across processes, through the shared
    `rate_limit_audit` budget), whose ``count`` is how many such refusals the recording
    process saw since its previous record for that client."""
    meta = request_meta(request)
    key = f"{event_type}:{reason or ''}:{meta.ip or 'unknown'}"
    tally = _tally(request)
    count = tally.add(key)
    if count is None:
        return
    if await svc.rate_limit_audit.hit(f"refusal:{key}"):
        tally.put_back(key, count)
        return
    details: dict[str, Any] = {"count": count, "window_seconds": int(REFUSAL_WINDOW)}
    if reason:
        details["reason"] = reason
    async with svc.db.write() as db:
        await audit.record(
            db,
            event_type,
            meta,
            user_id=getattr(request.state, "refusal_user_id", None),
            path=request.url.path[:200],
            **details,
        )


async def audit_refusal_quietly(
    request: Request, svc: Services, event_type: str, reason: str | None = None
) -> None:
    """`audit_refusal` after the answer has gone (a background task): a failure to
    record is logged, never raised into the server."""
    try:
        await audit_refusal(request, svc, event_type, reason=reason)
    except Exception as exc:  # the refusal itself has been answered already
        log.warning("refusal_not_recorded", event_type=event_type, error_type=type(exc).__name__)


#: Where `current_principal` keeps its answer for the rest of the request.
_PRINCIPAL = "upwork_assistant.principal"
_UNSET: Any = object()


async def current_principal(request: Request) -> Principal | None:
    """`authenticate`, once per request whichever dependency asks first."""
    found = request.scope.get(_PRINCIPAL, _UNSET)
    if found is _UNSET:
        found = request.scope[_PRINCIPAL] = await authenticate(request, request.app.state.services)
    return found  # type: ignore[no-any-return]


# What a signed-in user's routes run first: one guard per request (the API's through its
# route class, the pages' as their routers' one dependency). Each dependency FastAPI
# resolves costs it more than the cached session check (docs/benchmarks.md).


#: Who may use a `SignedInRouter`'s routes: anyone (the route looks at who is calling
#: itself), a signed-in user, or an admin.
Access = Literal["optional", "user", "admin"]


async def api_guard(request: Request, access: Access = "user") -> None:
    """The API's signed-in routes: who is calling (401 when nobody and ``access`` wants
    somebody), the signed-in user's share of the API (API_RATE_LIMIT, per user), the
    session's last-seen touch, CSRF, then the admin check when ``access`` is "admin"."""
    principal = await current_principal(request)
    if principal is None:
        if access != "optional":
            raise AuthError("not_authenticated")
        return
    svc: Services = request.app.state.services
    user_id = principal.user.id
    await enforce(svc, svc.api_budget, user_id, request, user_id=user_id)
    await _signed_in_request(request, svc, principal)
    if access == "admin":
        _check_admin(svc, principal)


async def pages_guard(request: Request) -> None:
    """The pages' routers: the touch and CSRF (the API budget is the API's)."""
    principal = await current_principal(request)
    if principal is not None:
        await _signed_in_request(request, request.app.state.services, principal)


async def _signed_in_request(request: Request, svc: Services, principal: Principal) -> None:
    # Note that the session is in use (at most every TOUCH_EVERY: a write per request
    # would cost more than the request).
    if utcnow() - principal.session.last_seen_at >= TOUCH_EVERY:
        async with svc.db.write() as db:
            await svc.sessions.touch(db, principal.session, request_meta(request))
    # An unsafe request authenticated by cookie must carry the session's CSRF token
    # (header, or form field for plain HTML forms); a Bearer token needs none.
    if (
        principal.via_cookie
        and request.method in UNSAFE_METHODS
        and not svc.csrf.valid(principal.session.id, await presented_csrf(request))
    ):
        raise AuthError("csrf_failed")


#: What every route of the pages' signed-in routers gets (the API's: `SignedInRouter`).
SIGNED_IN_PAGES = [Depends(pages_guard)]


def _guarded_route(access: Access) -> type[APIRoute]:
    class GuardedRoute(APIRoute):
        """A route whose handler runs `api_guard` first: what a router dependency would
        do, without a dependency for FastAPI to resolve on every request."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                await api_guard(request, access)
                return await handler(request)

            return guarded

    return GuardedRoute


class SignedInRouter(APIRouter):
    """A router of the signed-in API: `api_guard` before every route (for ``access``:
    see `Access`), and both security schemes on every operation in the OpenAPI document.
    Its routes get the caller with `signed_in`."""

    def __init__(self, *, access: Access = "user", **kwargs: Any) -> None:
        super().__init__(route_class=_guarded_route(access), **kwargs)

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        extra = dict(kwargs.get("openapi_extra") or {})
        # A route's own requirements add alternatives (e.g. ``{}``: also without a session).
        extra["security"] = [*SIGNED_IN_OPENAPI["security"], *extra.get("security", [])]
        kwargs["openapi_extra"] = extra
        super().add_api_route(path, endpoint, **kwargs)


async def signed_in(request: Request) -> Principal:
    """The signed-in caller, or 401: how a `SignedInRouter` route gets them (its guard
    has authenticated the request already, so this is a lookup). A plain call rather than
    a dependency: FastAPI resolving one costs more than the cached session check."""
    principal = await current_principal(request)
    if principal is None:
        raise AuthError("not_authenticated")
    return principal


async def signed_in_admin(request: Request) -> Principal:
    """`signed_in`, and an admin: the pages' check (the API's routers check by ``access``)."""
    principal = await signed_in(request)
    _check_admin(request.app.state.services, principal)
    return principal


def _check_admin(svc: Services, principal: Principal) -> None:
    if not principal.user.is_admin:
        raise AuthError("forbidden")
    if svc.settings.admin_mfa_required and not principal.user.mfa_enabled:
        # ADMIN_REQUIRE_MFA: admin powers (block anyone, read every user's security log)
        # need a second factor, not just a session from an Upwork sign-in.
        raise AuthError("forbidden", detail="admin_mfa_required")


ServicesDep = Annotated[Services, Depends(get_services)]


async def _request_meta(request: Request) -> RequestMeta:
    return request_meta(request)


MetaDep = Annotated[RequestMeta, Depends(_request_meta)]
#: The pages' signed-in caller (the API's routes call `signed_in` instead).
PrincipalDep = Annotated[Principal, Depends(signed_in)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(signed_in_admin)]


async def enforce(
    svc: Services, budget: Budget, key: str, request: Request, user_id: str | None = None
) -> None:
    """Spend from ``budget`` for ``key``; over the limit, a 429 (audited once a minute)."""
    retry_after = await budget.hit(key)
    if not retry_after:
        return
    if not await svc.rate_limit_audit.hit(f"{budget.name}:{key}"):
        async with svc.db.write() as db:
            await audit.record(
                db, audit.RATE_LIMIT_HIT, request_meta(request), user_id=user_id, limit=budget.name
            )
    raise RateLimitExceeded(retry_after)


async def signin_rate_limit(
    request: Request, svc: Annotated[Services, Depends(get_services)]
) -> None:
    """Per client IP on the sign-in endpoints."""
    client = request.client.host if request.client else None
    await enforce(svc, svc.signin_budget, client or "unknown", request)


def refresh_on_use(
    sync: ProfileSyncService,
    user: User,
    conn: UpworkConnection | None,
    background: BackgroundTasks,
) -> bool:
    """The user is using the product: when their Upwork content is stale and the
    connection works, fetch it again after this answer. True when that will happen."""
    if not sync.due_on_use(user, conn):
        return False
    background.add_task(sync.refresh_if_stale, user.id)
    return True


async def end_others_if(
    revoke: bool, svc: Services, principal: Principal, meta: RequestMeta, change: str
) -> int:
    """ "Sign out my other sessions", ticked with a change of the second factors: how many
    sessions ended."""
    if not revoke:
        return 0
    return await svc.accounts.end_other_sessions_after_mfa_change(
        principal.user.id, principal.session.id, meta, change
    )
