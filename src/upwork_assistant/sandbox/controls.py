"""The sandbox's test and demo controls, its portraits and its index page.

- ``/_sandbox/faults`` (GET, PATCH, DELETE) and ``/_sandbox/stats``: test and demo controls,
  open or behind a token (see :func:`guard_controls`)
- ``GET /_sandbox/portraits/{user_id}.svg[?size=N]``: the users' portraits (GraphQL
  ``photoUrl`` and the profiles' ``Portrait`` URLs)
- ``GET /``: the index page
"""

from __future__ import annotations

import hashlib
import hmac
import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.base import RequestResponseEndpoint

from .common import TEMPLATES, scope_labels, served_at
from .state import IpRateLimiter, SandboxState, SandboxUser

GUARDED = ("/_sandbox/faults", "/_sandbox/stats")


def controls_router(state: SandboxState) -> APIRouter:
    """Portraits, the fault and stats controls, and the index page, on ``state``."""
    router = APIRouter()

    @router.get("/_sandbox/portraits/{user_id}.svg")
    async def portrait(user_id: str, request: Request) -> Response:
        return portrait_response(state, user_id, request)

    @router.get("/_sandbox/faults")
    async def get_faults() -> dict[str, Any]:
        return state.faults.as_dict()

    @router.patch("/_sandbox/faults")
    async def patch_faults(request: Request) -> Response:
        return await update_faults(state, request)

    @router.delete("/_sandbox/faults")
    async def reset_faults() -> dict[str, Any]:
        return reset(state)

    @router.get("/_sandbox/stats")
    async def stats() -> dict[str, int]:
        return dict(state.stats)

    @router.get("/")
    async def index(request: Request) -> HTMLResponse:
        return index_page(state, request)

    return router


# ----- portraits ------------------------------------------------------------------------


def portrait_size(text: str | None) -> int:
    """The ``size`` query parameter of a portrait: 16 to 1000 pixels, else 100."""
    size = int(text) if text is not None and text.isdigit() else 100
    return size if 16 <= size <= 1000 else 100


def portrait_svg(user: SandboxUser, size: int = 100) -> str:
    hue = int(hashlib.sha256(user.id.encode()).hexdigest()[:4], 16) % 360
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        'viewBox="0 0 100 100">'
        f'<rect width="100" height="100" fill="hsl({hue},45%,40%)"/>'
        '<text x="50" y="50" dy=".35em" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif" font-size="40">{html.escape(user.initials)}</text></svg>'
    )


def portrait_response(state: SandboxState, user_id: str, request: Request) -> Response:
    user = state.users.get(user_id)
    if user is None:
        return Response("no such user", status_code=404, media_type="text/plain")
    size = portrait_size(request.query_params.get("size"))
    return Response(portrait_svg(user, size), media_type="image/svg+xml")


# ----- the controls' guard --------------------------------------------------------------


async def guard_controls(
    state: SandboxState, request: Request, call_next: RequestResponseEndpoint
) -> Response:
    """HTTP middleware (bind ``state`` first): refuses the controls unless they are open
    or the request carries their token."""
    root = str(request.scope.get("root_path", ""))
    path = str(request.scope["path"])
    route = path[len(root) :] if root and path.startswith(root) else path
    if route.startswith(GUARDED):
        refused = controls_refused(state, request)
        if refused is not None:
            return refused
    return await call_next(request)


def controls_refused(state: SandboxState, request: Request) -> Response | None:
    if state.config.controls_open:
        return None
    token = state.config.controls_token
    if not token:
        return JSONResponse({"error": "not_found"}, status_code=404)
    presented = request.headers.get("authorization", "")
    if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
        return JSONResponse(
            {"error": "not_authenticated", "message": "The sandbox controls need a token."},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


# ----- controls and index ---------------------------------------------------------------


async def update_faults(state: SandboxState, request: Request) -> Response:
    try:
        values = await request.json()
        if not isinstance(values, dict):
            raise ValueError("send a JSON object")
        state.faults.update(values)
    except ValueError as exc:
        return JSONResponse({"error": "invalid_request", "message": str(exc)}, 400)
    return JSONResponse(state.faults.as_dict())


def reset(state: SandboxState) -> dict[str, Any]:
    state.config.faults = type(state.faults)()
    state.ip_limiter = IpRateLimiter()  # and forget which IPs were blocked
    return state.faults.as_dict()


def index_page(state: SandboxState, request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "index.html",
        {
            "users": list(state.users.values()),
            "clients": [(c, scope_labels(state, c.client_id)) for c in state.clients.values()],
            "base_url": served_at(request),
        },
    )
