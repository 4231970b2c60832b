"""The sandbox's ASGI app, on Upwork's own paths: the parts composed.

- :mod:`.oauth`: ``GET/POST /ab/account-security/oauth2/authorize`` (consent page) and
  ``POST /api/v3/oauth2/token`` (``authorization_code`` and ``refresh_token`` grants)
- :mod:`.graphql_api`: ``POST /graphql`` with ``Authorization: Bearer``
- :mod:`.controls`: ``/_sandbox/faults`` (GET, PATCH, DELETE), ``/_sandbox/stats``, the
  portraits ``GET /_sandbox/portraits/{user_id}.svg[?size=N]`` and the index page
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.middleware.base import RequestResponseEndpoint

from . import schema
from .controls import controls_router, guard_controls
from .graphql_api import graphql_router
from .oauth import oauth_router
from .state import SandboxConfig, SandboxState

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)


async def sandbox_headers(request: Request, call_next: RequestResponseEndpoint) -> Response:
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"  # consent pages must not be framed
    return response


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    state = SandboxState(config)
    app = FastAPI(title="Upwork sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state
    app.middleware("http")(sandbox_headers)
    # Added last, so outermost: a refused control answers without the headers.
    app.middleware("http")(partial(guard_controls, state))
    app.include_router(oauth_router(state))
    app.include_router(graphql_router(state, schema.build()))
    app.include_router(controls_router(state))
    return app
