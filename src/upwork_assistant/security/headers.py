"""Security headers on every response (pure ASGI middleware)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import CALLBACK_PATH

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{images}; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' {upwork}"
)


class SecurityHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool,
        form_action_origin: str,
        image_hosts: tuple[str, ...] = (),
    ) -> None:
        """``image_hosts``: where portraits may load from (host names, served over https,
        or whole origins such as a sandbox's)."""
        self.app = app
        self.hsts = hsts
        images = "".join(f" {h}" if "://" in h else f" https://{h}" for h in image_hosts)
        self.csp = CSP.format(upwork=form_action_origin, images=images).strip()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
                headers.setdefault("Content-Security-Policy", self.csp)
                if path == CALLBACK_PATH:
                    # The callback URL carries the code and state: never leak it onwards.
                    headers["Referrer-Policy"] = "no-referrer"
                else:
                    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
                if path.startswith("/api/"):
                    # Every API answer is personal or carries a secret (sessions, MFA
                    # secrets and backup codes, tokens' state, the security log): never
                    # kept by a browser or a proxy.
                    headers["Cache-Control"] = "no-store"
                if self.hsts:
                    headers.setdefault(
                        "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)
