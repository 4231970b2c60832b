"""Pages: the sign-in page and, once signed in, the dashboard."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from ..auth.deps import OptionalPrincipalDep, ServicesDep
from ..auth.errors import REASONS, reason
from ..db.models import UpworkConnection
from ..db.types import utcnow
from ..security.csrf import CSRF_COOKIE
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
    message = None
    if error:
        message = reason(error).message if error in REASONS else reason("").message
    if principal is None:
        return templates.TemplateResponse(
            request,
            "signin.html",
            {
                "sandbox_mode": settings.sandbox_mode,
                "error_message": message,
                # An expired access token with a live session: the page's script refreshes it.
                "try_refresh": CSRF_COOKIE in request.cookies and not error,
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
