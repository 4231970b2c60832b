"""One origin in development: a browser that opens the app at ``http://127.0.0.1:PORT``
while it lives at ``http://localhost:PORT`` (APP_BASE_URL, as ``make run`` sets it) is sent
there first. Cookies, the Upwork callback and passkeys then share one origin: browsers
refuse WebAuthn on an IP address (Chromium: "This is an invalid domain"), and a sign-in
begun on one host cannot finish on the other (the flow cookie stays behind).

Only page navigations (GET or HEAD asking for HTML) from a loopback address to the
same port are moved; API clients, probes and every other host are left alone."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalhostRedirectMiddleware:
    def __init__(self, app: ASGIApp, base_url: str) -> None:
        self.app = app
        parts = urlsplit(base_url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.port = parts.port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            headers = Headers(scope=scope)
            if "text/html" in headers.get("accept", ""):
                host = urlsplit(f"//{headers.get('host', '')}")
                if _is_loopback_ip(host.hostname or "") and host.port == self.port:
                    query = scope.get("query_string", b"").decode("latin-1")
                    target = self.base + scope["path"] + (f"?{query}" if query else "")
                    await RedirectResponse(target, status_code=307)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def wants_localhost(base_url: str, production: bool) -> bool:
    """The middleware is for development at http://localhost only."""
    parts = urlsplit(base_url)
    return not production and parts.hostname == "localhost"
