"""create_app(): wires settings, services, routers, middleware and the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from . import __version__
from .api.canonical import LocalhostRedirectMiddleware, wants_localhost
from .api.docs import install_api_docs
from .api.errors import error_json, install_error_handlers
from .api.metrics import HTTPMetricsMiddleware, exposition
from .api.routes import account, admin, auth, passkeys, security, upwork
from .config import SANDBOX_CLIENT_ID, SANDBOX_PREFIX, Settings, get_settings
from .logs import configure_logging_for
from .sandbox import SandboxClient, SandboxConfig, create_sandbox_app, parse_scopes
from .security.body import BodySizeLimitMiddleware
from .security.headers import SecurityHeadersMiddleware
from .security.keys import constant_time_equal
from .services import Services
from .web import render as web_render
from .web import routes as web_pages

log = structlog.get_logger("upwork_assistant")


async def _reload_jwt_keys(services: Services) -> None:
    """Pick up signing keys rotated by another instance or the command line."""
    while True:
        await asyncio.sleep(services.jwt_keys.RELOAD_EVERY)
        try:
            await services.jwt_keys.reload_if_due()
        except Exception as exc:  # the database may be briefly away; try again later
            log.warning("jwt_key_reload_failed", error_type=type(exc).__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app: settings -> services -> routes, error handlers, middleware, the sandbox."""
    settings = settings or get_settings()
    configure_logging_for(settings)
    services = Services.build(settings)  # resolves secrets: production stops here if missing
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="Sign in with Upwork: accounts, sessions and Upwork API access.",
        lifespan=_lifespan(services, settings),
        docs_url=None,  # served without a CDN by install_api_docs; ReDoc stays off
        redoc_url=None,
    )
    app.state.services = services
    app.state.settings = settings
    install_api_docs(app)
    install_error_handlers(app, web_render)
    _add_operational_routes(app, services, settings)
    for router in ROUTERS:
        app.include_router(router)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static"
    )
    if settings.sandbox_mode:
        _mount_sandbox(app, settings)
    _add_middleware(app, settings)
    return app


#: The JSON API's routers, then the pages'.
ROUTERS = (
    auth.router,
    auth.session_router,
    auth.signout_router,
    security.router,
    passkeys.router,
    passkeys.signin_router,
    account.router,
    admin.router,
    admin.admin_router,
    upwork.router,
    web_pages.public_router,
    web_pages.router,
)


def _lifespan(
    services: Services, settings: Settings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
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
        for task in (key_reloader, worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await services.aclose()
        gc.unfreeze()

    return lifespan


def _add_operational_routes(app: FastAPI, services: Services, settings: Settings) -> None:
    """Health, readiness and the Prometheus metrics."""

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

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: only with METRICS_TOKEN set, and only for its bearer."""
        token = settings.metrics_token
        presented = request.headers.get("authorization", "")
        if not token:
            return error_json("not_found", "Not Found", 404)
        if not constant_time_equal(presented, f"Bearer {token}"):
            return error_json(
                "not_authenticated",
                "Metrics need the metrics token.",
                401,
                {"WWW-Authenticate": "Bearer"},
            )
        body, media_type = exposition()
        return Response(body, media_type=media_type)


def _mount_sandbox(app: FastAPI, settings: Settings) -> None:
    """Sandbox mode: the Upwork sandbox under SANDBOX_PREFIX, with this app's key."""
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


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Added innermost first: CORS (when configured), the body limit, the move from
    127.0.0.1 to localhost (development at localhost only), metrics, security headers, and
    outermost the trusted proxies' headers."""
    if settings.cors_origins.strip():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    if wants_localhost(settings.app_base_url, settings.is_production):
        app.add_middleware(LocalhostRedirectMiddleware, base_url=settings.app_base_url)
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
