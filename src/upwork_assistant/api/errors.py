"""The one error body and every exception handler: JSON (``{"error", "message"}``) for an
API client; for a person's browser (one rule: api/deps.py ``is_browser``) the sign-in page
with the reason or the styled error page, as the error says (errors.py ``AppError``)."""

from __future__ import annotations

from typing import Protocol

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from limits.errors import StorageError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AppError
from .deps import ACCESS_FORBIDDEN, CSRF_REJECTED, audit_refusal_quietly, is_browser

log = structlog.get_logger("upwork_assistant")


#: Refusals that go to the security log (aggregated per client a minute), by reason code:
#: every AuthError with one of these codes becomes an answer here, wherever it was raised
#: (the guards' CSRF and admin checks, the admin page, refresh and sign-out).
AUDITED_REFUSALS = {"csrf_failed": CSRF_REJECTED, "forbidden": ACCESS_FORBIDDEN}


def error_response(request: Request, exc: AppError, pages: ErrorPages | None = None) -> Response:
    """The answer to an AppError, by one rule (``is_browser``): a browser goes to the
    sign-in page with the reason (``browser_target == "signin"``) or gets the styled error
    page; an API client gets the JSON body. Refusals worth seeing are recorded in the
    security log after the answer has gone (aggregated per client a minute)."""
    response: Response
    if is_browser(request) and (exc.browser_target == "signin" or pages is None):
        response = RedirectResponse(f"/?error={exc.code}", status_code=303)
    elif is_browser(request) and pages is not None:
        retry = (exc.headers or {}).get("Retry-After")
        response = pages.error_page(
            request,
            exc.status,
            headers=exc.headers,
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )
    else:
        response = error_json(exc.code, exc.message, exc.status, exc.headers)
    event = AUDITED_REFUSALS.get(exc.code)
    if event is not None:
        # Recorded after the answer has gone: a refusal costs the refused no waiting.
        response.background = BackgroundTask(
            audit_refusal_quietly, request, request.app.state.services, event
        )
    return response


def _sqlstate(exc: DBAPIError) -> str:
    """The SQLSTATE of a driver error, wherever the driver put it."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def error_json(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class ErrorPages(Protocol):
    """The HTML face's error pages (web/render.py), handed in by the composition root so
    that this layer does not import the pages."""

    def error_page(
        self,
        request: Request,
        status_code: int,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> Response: ...


def install_error_handlers(app: FastAPI, pages: ErrorPages) -> None:
    """Every error the app raises, answered by one rule (see the module's docstring)."""

    def error_answer(
        request: Request,
        code: str,
        message: str,
        status: int,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """JSON for the API; a styled page, in the person's language, for a browser."""
        if is_browser(request):
            retry = (headers or {}).get("Retry-After")
            return pages.error_page(
                request,
                status,
                headers=headers,
                retry_after=int(retry) if retry and retry.isdigit() else None,
            )
        return error_json(code, message, status, headers)

    def unavailable(request: Request) -> Response:
        """The database or Redis is away: 503, try again in a few seconds."""
        return error_answer(
            request,
            "service_unavailable",
            "The service is temporarily unavailable. Please try again soon.",
            503,
            {"Retry-After": "5"},
        )

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> Response:
        return error_response(request, exc, pages)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid input')}"
        return error_answer(request, "invalid_request", message, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return error_answer(request, code, str(exc.detail), exc.status_code, headers)

    @app.exception_handler(RedisError)
    @app.exception_handler(StorageError)
    @app.exception_handler(ConnectionError)  # e.g. the database refusing connections
    @app.exception_handler(TimeoutError)
    async def backend_unavailable(request: Request, exc: Exception) -> Response:
        log.error("backend_unavailable", error_type=type(exc).__name__)
        return unavailable(request)

    @app.exception_handler(DBAPIError)
    async def database_unavailable(request: Request, exc: DBAPIError) -> Response:
        if isinstance(exc, DataError) or _sqlstate(exc).startswith("22"):
            # A data exception (e.g. a NUL character, which PostgreSQL text cannot hold):
            # the client's input, not the database's health.
            return error_answer(
                request,
                "invalid_request",
                "The request holds characters or values that cannot be used.",
                422,
            )
        log.error("database_error", error_type=type(exc.orig).__name__)
        return unavailable(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return error_answer(request, "internal_error", "Something went wrong on our side.", 500)
