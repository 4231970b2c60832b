"""create_app(): wires settings, services, routers, middleware and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from coredis.exceptions import RedisError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from limits.errors import StorageError
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from . import __version__
from .api.metrics import HTTPMetricsMiddleware, exposition
from .auth.account_routes import account_router as delete_account_router
from .auth.account_routes import router as account_router
from .auth.errors import AuthError
from .auth.mfa import MfaLocked
from .auth.routes import error_response
from .auth.routes import router as auth_router
from .config import SANDBOX_CLIENT_ID, SANDBOX_PREFIX, Settings, get_settings
from .sandbox import SandboxClient, SandboxConfig, create_sandbox_app, parse_scopes
from .security.body import BodySizeLimitMiddleware
from .security.headers import SecurityHeadersMiddleware
from .security.keys import constant_time_equal
from .security.ratelimit import RateLimitExceeded
from .security.redact import install_access_log_redaction
from .security.routes import router as security_router
from .services import Services
from .upwork.errors import UpworkError
from .upwork.routes import router as upwork_router
from .web.render import error_page, wants_html
from .web.routes import router as web_router

log = structlog.get_logger("upwork_assistant")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # httpx logs every request URL at INFO; keep our own lines the only ones about Upwork.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_access_log_redaction()


async def _reload_jwt_keys(services: Services) -> None:
    """Pick up signing keys rotated by another instance or the command line."""
    while True:
        await asyncio.sleep(services.jwt_keys.RELOAD_EVERY)
        try:
            await services.jwt_keys.reload_if_due()
        except Exception as exc:  # the database may be briefly away; try again later
            log.warning("jwt_key_reload_failed", error_type=type(exc).__name__)


def _sqlstate(exc: DBAPIError) -> str:
    """The SQLSTATE of a driver error, wherever the driver put it."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def _error(
    request: Request,
    code: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON for the API; a styled page, in the person's language, for a browser."""
    if wants_html(request):
        retry = (headers or {}).get("Retry-After")
        return error_page(
            request,
            status,
            headers=headers,
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )
    return _error_json(code, message, status, headers)


def _error_json(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    services = Services.build(settings)  # resolves secrets: production stops here if missing
    # The upkeep (keep-alive of Upwork links, the 24-hour purge, log upkeep) runs inside
    # unless told otherwise; `serve --workers N` turns it off and wants `worker` beside it.
    run_worker = settings.worker_in_serve is not False

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "startup",
            sandbox_mode=settings.sandbox_mode,
            env=settings.app_env,
            base_url=settings.app_base_url,
            worker_in_serve=run_worker,
        )
        await services.start()
        # What startup built lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise stall requests now and then.
        gc.freeze()
        key_reloader = asyncio.create_task(_reload_jwt_keys(services))
        worker = asyncio.create_task(services.worker.run_forever()) if run_worker else None
        yield
        key_reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await key_reloader
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await services.aclose()
        gc.unfreeze()

    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="Sign in with Upwork: accounts, sessions and Upwork API access.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        response = error_response(request, exc)
        if isinstance(exc, MfaLocked):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(UpworkError)
    async def upwork_error(request: Request, exc: UpworkError) -> Response:
        return _error(request, exc.code, exc.message, exc.status, exc.headers)

    @app.exception_handler(RateLimitExceeded)
    async def rate_limited(request: Request, exc: RateLimitExceeded) -> Response:
        return _error(
            request, "rate_limited", exc.message, 429, {"Retry-After": str(exc.retry_after)}
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid input')}"
        return _error(request, "invalid_request", message, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        return _error(request, code, str(exc.detail), exc.status_code, headers)

    @app.exception_handler(RedisError)
    @app.exception_handler(StorageError)
    @app.exception_handler(ConnectionError)  # e.g. the database refusing connections
    @app.exception_handler(TimeoutError)
    async def backend_unavailable(request: Request, exc: Exception) -> Response:
        log.error("backend_unavailable", error_type=type(exc).__name__)
        return _error(
            request,
            "service_unavailable",
            "The service is temporarily unavailable. Please try again soon.",
            503,
            {"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def database_unavailable(request: Request, exc: DBAPIError) -> Response:
        if isinstance(exc, DataError) or _sqlstate(exc).startswith("22"):
            # A data exception (e.g. a NUL character, which PostgreSQL text cannot hold):
            # the client's input, not the database's health.
            return _error(
                request,
                "invalid_request",
                "The request holds characters or values that cannot be used.",
                422,
            )
        log.error("database_error", error_type=type(exc.orig).__name__)
        return _error(
            request,
            "service_unavailable",
            "The service is temporarily unavailable. Please try again soon.",
            503,
            {"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", error_type=type(exc).__name__)
        return _error(request, "internal_error", "Something went wrong on our side.", 500)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers. Does no I/O."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        """Readiness: the database (and Redis, when configured) is reachable."""
        body: dict[str, str] = {"status": "ok", "database": "ok"}
        try:
            await services.db.ping()
        except Exception as exc:  # any driver error means "not ready"
            log.warning("readyz_database_unreachable", error_type=type(exc).__name__)
            body.update(status="unavailable", database="unreachable")
        if settings.redis_url:
            body["redis"] = "ok"
            if not await services.limiter.ping():
                body.update(status="unavailable", redis="unreachable")
        return JSONResponse(body, 200 if body["status"] == "ok" else 503)

    app.include_router(auth_router)
    app.include_router(account_router)
    app.include_router(delete_account_router)
    app.include_router(security_router)
    app.include_router(upwork_router)
    app.include_router(web_router)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static"
    )

    if settings.sandbox_mode:
        sandbox = create_sandbox_app(
            SandboxConfig(
                clients=[
                    SandboxClient(
                        client_id=SANDBOX_CLIENT_ID,
                        client_secret=settings.oauth_client_secret,
                        redirect_uris=(settings.redirect_uri,),
                        scopes=parse_scopes(settings.sandbox_scopes),
                    )
                ],
                controls_open=not settings.is_production,
                controls_token=settings.sandbox_controls_token,
            )
        )
        app.mount(SANDBOX_PREFIX, sandbox, name="upwork-sandbox")
        app.state.sandbox = sandbox

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: only with METRICS_TOKEN set, and only for its bearer."""
        token = settings.metrics_token
        presented = request.headers.get("authorization", "")
        if not token:
            return _error_json("not_found", "Not Found", 404)
        if not constant_time_equal(presented, f"Bearer {token}"):
            return _error_json(
                "not_authenticated",
                "Metrics need the metrics token.",
                401,
                {"WWW-Authenticate": "Bearer"},
            )
        body, media_type = exposition()
        return Response(body, media_type=media_type)

    if settings.cors_origins.strip():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(HTTPMetricsMiddleware)
    upwork_origin = "{0.scheme}://{0.netloc}".format(urlsplit(settings.authorize_url))
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=settings.cookie_secure,
        form_action_origin=upwork_origin,
        image_hosts=settings.image_hosts,
    )
    if settings.trusted_proxies.strip():
        # Outermost: the client address and scheme come from trusted proxies only.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[h.strip() for h in settings.trusted_proxies.split(",") if h.strip()],
        )
    return app
