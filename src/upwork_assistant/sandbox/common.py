"""What the sandbox's endpoints share: templates, headers, the per-IP limit, URLs."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from .scopes import SCOPES
from .state import SandboxState

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def served_at(request: Request) -> str:
    """The sandbox's own absolute base URL, its mount prefix included (``request.base_url``
    is the outermost app's)."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")


def error_page(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, "error.html", {"message": message}, status_code=status
    )


def rate_limited(state: SandboxState, request: Request) -> Response | None:
    """Upwork's per-IP limit: 429 with no Retry-After (none is documented)."""
    faults = state.faults
    ip = request.client.host if request.client else ""
    if state.ip_limiter.allow(ip, faults.ip_rate_limit, faults.ip_block_seconds):
        return None
    state.stats["rate_limited"] += 1
    return JSONResponse({"message": "Too Many Requests"}, status_code=429)


def scope_labels(state: SandboxState, client_id: str) -> list[str]:
    return [SCOPES[s].label for s in state.client_scopes(client_id)]
