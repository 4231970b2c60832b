"""The interactive API docs at ``/docs``, served whole by the app itself: no CDN.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script, which
the Content-Security-Policy (``security/headers.py``) rightly blocks. Here Swagger UI's
files come from the ``fastapi-offline`` package (it ships swagger-ui-dist 5) and the page
is started by ``static/swagger-init.js``, a file of ours: every script and stylesheet on
the page comes from 'self', so /docs works under the very same policy as every other page
(Swagger UI sets its runtime styles through the DOM, which style-src does not govern;
tests/test_api_docs.py checks this in Chromium). The app is made with ``docs_url=None,
redoc_url=None``; ReDoc stays off (one docs page is enough, and ReDoc injects <style>
elements and starts a worker from a blob: URL, which the policy would have to allow).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from .schemas import security_schemes

DOCS_PATH = "/docs"
#: Where the page's files are served: Swagger UI's own and our start-up script.
ASSETS_PATH = f"{DOCS_PATH}/assets"

_VENDOR = Path(fastapi_offline.__file__).resolve().parent / "static"
_OURS = Path(__file__).resolve().parent / "static"
#: The only files served under ASSETS_PATH (not the whole package folder).
ASSETS: dict[str, Path] = {
    "swagger-ui-bundle.js": _VENDOR / "swagger-ui-bundle.js",
    "swagger-ui.css": _VENDOR / "swagger-ui.css",
    "swagger-init.js": _OURS / "swagger-init.js",
}
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{root}/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI) and its files to ``app``, made with ``docs_url=None``."""
    if app.openapi_url is None:  # no OpenAPI document: nothing to show
        return
    _declare_security_schemes(app)
    missing = [name for name, path in ASSETS.items() if not path.is_file()]
    if missing:  # a broken install: say so at start-up, not as a blank page later
        raise RuntimeError(f"API docs files missing: {', '.join(missing)}")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = _PAGE.format(
            title=escape(f"{app.title} - API docs"),
            root=escape(root),
            assets=escape(f"{root}{ASSETS_PATH}"),
            openapi_url=escape(f"{root}{app.openapi_url}"),
        )
        return HTMLResponse(page)

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def swagger_asset(name: str) -> FileResponse:
        path = ASSETS.get(name)
        if path is None:
            raise HTTPException(404, "Not Found")
        return FileResponse(
            path,
            media_type=_MEDIA_TYPES[path.suffix],
            headers={"Cache-Control": "public, max-age=3600"},
        )


def _declare_security_schemes(app: FastAPI) -> None:
    """The schemes `SIGNED_IN_OPENAPI` names, in ``components.securitySchemes``: FastAPI
    lists only the schemes of dependencies, and ours are not dependencies."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(security_schemes())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
