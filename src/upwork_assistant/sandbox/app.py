"""The sandbox's HTTP endpoints, on Upwork's own paths.

- ``GET/POST /ab/account-security/oauth2/authorize``: consent page (pick a user, Allow/Deny)
- ``POST /api/v3/oauth2/token``: ``authorization_code`` and ``refresh_token`` grants
- ``POST /graphql``: GraphQL with ``Authorization: Bearer``
- ``/_sandbox/faults`` (GET, PATCH, DELETE) and ``/_sandbox/stats``: test and demo controls
- ``GET /_sandbox/portraits/{user_id}.svg[?size=N]``: the users' portraits (GraphQL
  ``photoUrl`` and the profiles' ``Portrait`` URLs)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
import inspect
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from graphql import DocumentNode, ExecutionResult, GraphQLError, execute, parse, validate

from . import profiles, schema
from .scopes import SCOPES, scope_error
from .state import (
    CONSENT_TTL,
    Grant,
    IpRateLimiter,
    PendingConsent,
    SandboxConfig,
    SandboxState,
    SandboxUser,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 section 5.2 error answer."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _redirect_with(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=302)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _served_at(request: Request) -> str:
    """The sandbox's own absolute base URL, its mount prefix included (``request.base_url``
    is the outermost app's)."""
    root = request.scope.get("root_path", "")
    return str(request.url.replace(path=root, query="", fragment="")).rstrip("/")


def _portrait_size(text: str | None) -> int:
    """The ``size`` query parameter of a portrait: 16 to 1000 pixels, else 100."""
    size = int(text) if text is not None and text.isdigit() else 100
    return size if 16 <= size <= 1000 else 100


def _portrait_svg(user: SandboxUser, size: int = 100) -> str:
    hue = int(hashlib.sha256(user.id.encode()).hexdigest()[:4], 16) % 360
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        'viewBox="0 0 100 100">'
        f'<rect width="100" height="100" fill="hsl({hue},45%,40%)"/>'
        '<text x="50" y="50" dy=".35em" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif" font-size="40">{html.escape(user.initials)}</text></svg>'
    )


def _graphql_errors(*errors: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"data": None, "errors": list(errors)}, status_code=status)


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    state = SandboxState(config)
    gql_schema = schema.build()
    app = FastAPI(title="Upwork sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state

    @app.middleware("http")
    async def sandbox_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"  # consent pages must not be framed
        return response

    def error_page(request: Request, message: str, status: int = 400) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "error.html", {"message": message}, status_code=status
        )

    def rate_limited(request: Request) -> Response | None:
        """Upwork's per-IP limit: 429 with no Retry-After (none is documented)."""
        faults = state.faults
        ip = request.client.host if request.client else ""
        if state.ip_limiter.allow(ip, faults.ip_rate_limit, faults.ip_block_seconds):
            return None
        state.stats["rate_limited"] += 1
        return JSONResponse({"message": "Too Many Requests"}, status_code=429)

    def scope_labels(client_id: str) -> list[str]:
        return [SCOPES[s].label for s in state.client_scopes(client_id)]

    # ----- authorization endpoint ------------------------------------------------------

    def pkce_refusal(challenge: str | None, method: str | None) -> str | None:
        """Why the authorize request's PKCE parameters are refused, or None."""
        mode = state.faults.pkce
        if challenge is None or mode == "ignore":
            return None
        if mode == "reject":
            return "PKCE is not supported"
        if method != "S256" or not 43 <= len(challenge) <= 128:
            return "PKCE: code_challenge_method must be S256"
        return None

    @app.get("/ab/account-security/oauth2/authorize", response_class=HTMLResponse)
    async def authorize(request: Request) -> Response:
        q = request.query_params
        client = state.clients.get(q.get("client_id", ""))
        if client is None:
            return error_page(request, "Unknown client_id: this application is not registered.")
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            # Never redirect to an unregistered URI: show the error here instead.
            return error_page(
                request, "The redirect_uri does not match the application's registered callback."
            )
        state_param = q.get("state")
        if q.get("response_type") != "code":
            return _redirect_with(
                redirect_uri,
                {
                    "error": "unsupported_response_type",
                    "error_description": "response_type must be 'code'",
                    "state": state_param,
                },
            )
        challenge = q.get("code_challenge")
        refusal = pkce_refusal(challenge, q.get("code_challenge_method"))
        if refusal is not None:
            return _redirect_with(
                redirect_uri,
                {"error": "invalid_request", "error_description": refusal, "state": state_param},
            )
        consent_id = state.new_consent(
            PendingConsent(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                state=state_param,
                scope=q.get("scope"),
                # "ignore": the challenge is accepted and forgotten, the verifier never checked.
                code_challenge=None if state.faults.pkce == "ignore" else challenge,
                expires_at=time.time() + CONSENT_TTL,
            )
        )
        return TEMPLATES.TemplateResponse(
            request,
            "consent.html",
            {
                "consent_id": consent_id,
                "client_id": client.client_id,
                "redirect_uri": redirect_uri,
                "users": list(state.users.values()),
                "scopes": scope_labels(client.client_id),
                "action": request.url.path,
            },
        )

    @app.post("/ab/account-security/oauth2/authorize")
    async def consent(request: Request) -> Response:
        form = await request.form()
        consent_id = str(form.get("consent_id", ""))
        pending = state.consents.pop(consent_id, None)
        if pending is None or pending.expires_at < time.time():
            return error_page(
                request,
                "This consent request has expired or was already used. "
                "Go back to the application and start again.",
            )
        if form.get("decision") != "allow":
            if not state.faults.deny_redirect:
                return TEMPLATES.TemplateResponse(request, "denied.html", {})
            return _redirect_with(
                pending.redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "The user denied access",
                    "state": pending.state,
                },
            )
        user_id = str(form.get("user_id", ""))
        if user_id not in state.users:
            state.consents[consent_id] = pending  # let the user pick again
            return error_page(request, "Pick one of the sandbox users.", 400)
        code = state.issue_code(pending, user_id)
        state.stats["codes_issued"] += 1
        return _redirect_with(pending.redirect_uri, {"code": code, "state": pending.state})

    # ----- token endpoint -------------------------------------------------------------

    def basic_credentials(request: Request) -> tuple[str, str] | None:
        """(client_id, secret) from an HTTP Basic header, ("", "") if it is malformed, or
        None without one."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        cid, _, secret = raw.partition(":")
        return unquote(cid), unquote(secret)

    def authenticate_client(
        request: Request, form: dict[str, str], allow_basic: bool
    ) -> tuple[str | None, bool]:
        """Returns (client_id or None, used_basic)."""
        basic = basic_credentials(request) if allow_basic else None
        if basic is not None:
            cid, secret = basic
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = state.clients.get(cid)
        if client is None or not hmac.compare_digest(
            client.client_secret.encode(), secret.encode()
        ):
            return None, basic is not None
        return cid, basic is not None

    def exchange_code(form: dict[str, str], client_id: str) -> Response:
        state.stats["token_authorization_code"] += 1
        code_value = form.get("code", "")
        issued = state.codes.get(code_value)
        if issued is None or issued.client_id != client_id:
            return _oauth_error("invalid_grant", "authorization code is invalid")
        if issued.used:
            # RFC 6749 section 4.1.2: a code used twice revokes what it gave.
            state.revoke_family(code_value)
            return _oauth_error("invalid_grant", "authorization code was already used")
        issued.used = True
        if issued.expires_at < time.time():
            return _oauth_error("invalid_grant", "authorization code has expired")
        if form.get("redirect_uri") != issued.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri does not match")
        if issued.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
                _s256(verifier), issued.code_challenge
            ):
                return _oauth_error("invalid_grant", "PKCE verification failed")
        body = state.issue_tokens(client_id, issued.user_id, family=code_value)
        state.stats["tokens_issued"] += 1
        return JSONResponse(body, headers=NO_STORE)

    def refresh(form: dict[str, str], client_id: str) -> Response:
        old = form.get("refresh_token", "")
        grant = state.refresh_tokens.get(old)
        if grant is None or grant.client_id != client_id or not grant.valid(time.time()):
            return _oauth_error("invalid_grant", "refresh token is invalid or expired")
        if state.faults.rotate_refresh_token:
            state.retire_refresh_token(grant)
            body = state.issue_tokens(client_id, grant.user_id, grant.family)
        else:
            body = state.issue_tokens(client_id, grant.user_id, grant.family, refresh_token=old)
        return JSONResponse(body, headers=NO_STORE)

    @app.post("/api/v3/oauth2/token")
    async def token(request: Request) -> Response:
        faults = state.faults
        state.stats["token_requests"] += 1
        if (limited := rate_limited(request)) is not None:
            return limited
        if faults.token_delay:
            await asyncio.sleep(faults.token_delay)
        if faults.token_status:
            return JSONResponse({"error": "server_error"}, status_code=faults.token_status)
        if faults.token_non_json:
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _oauth_error("invalid_request", "use application/x-www-form-urlencoded")
        form = {k: str(v) for k, v in (await request.form()).items()}
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            state.stats["token_refresh"] += 1
            if faults.refresh_delay:  # a refresh still in flight while other things happen
                await asyncio.sleep(faults.refresh_delay)
        # Upwork reads a refresh's client credentials from the body only: with them in an
        # HTTP Basic header it answered "Missing parameters: client_id"
        # (upwork/node-upwork-oauth2 issue #29; the SDK moved them to the body, PR #31).
        basic_ok = grant_type != "refresh_token" or faults.refresh_basic_auth
        if not basic_ok and "client_id" not in form and basic_credentials(request):
            return _oauth_error("invalid_request", "Missing parameters: client_id")
        client_id, used_basic = authenticate_client(request, form, allow_basic=basic_ok)
        if client_id is None:
            return _oauth_error(
                "invalid_client",
                "client authentication failed",
                401,
                {"WWW-Authenticate": 'Basic realm="upwork"'} if used_basic else None,
            )
        if grant_type == "authorization_code":
            return exchange_code(form, client_id)
        if grant_type == "refresh_token":
            return refresh(form, client_id)
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    # ----- GraphQL --------------------------------------------------------------------

    def bearer_grant(request: Request) -> Grant | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        grant = state.access_tokens.get(header[7:].strip())
        return grant if grant is not None and grant.valid(time.time()) else None

    def unauthorized(message: str) -> JSONResponse:
        if state.faults.auth_error_status == 200:
            # Upwork's GraphQL answers most failures with 200 ("API error handling"); whether
            # authentication failures are among them is not documented, hence the switch.
            return _graphql_errors(
                {
                    "message": "Authentication failed: the access token is invalid, "
                    "expired or revoked",
                    "extensions": {
                        "code": "UNAUTHENTICATED",
                        "classification": "AuthenticationError",
                    },
                }
            )
        return JSONResponse(
            {"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    def fault_answer() -> Response | None:
        """What the graphql_status fault says instead of running the query, or None."""
        faults = state.faults
        if faults.graphql_status == 401:
            return unauthorized("Authentication failed: token rejected")
        if faults.graphql_status == 429:
            return JSONResponse(
                {"errors": [{"message": "Too many requests"}]},
                status_code=429,
                headers={"Retry-After": str(faults.retry_after)},
            )
        if faults.graphql_status:
            return JSONResponse(
                {"errors": [{"message": "Internal server error"}]},
                status_code=faults.graphql_status,
            )
        return None

    def root_value(user: SandboxUser, request: Request) -> dict[str, Any]:
        base_url, now = _served_at(request), datetime.now(UTC)  # one "now" per query
        return {
            "user": profiles.with_nulls(
                user.graphql_user(base_url, now), state.faults.profile_nulls
            ),
            "freelancerProfileByProfileKey": profiles.by_profile_key(
                state.users.values(), base_url, now
            ),
            "organization": user.graphql_organization(),
            "companySelector": {
                "items": [
                    {
                        "title": user.organization_name,
                        "organizationId": user.organization_id,
                        "organizationRid": user.organization_id[-7:],
                        "photoUrl": None,
                    }
                ]
            },
        }

    async def run_query(payload: dict[str, Any], grant: Grant, request: Request) -> JSONResponse:
        """Parse, validate, check the key's scopes, then execute."""
        try:
            document: DocumentNode = parse(payload["query"])
        except GraphQLError as exc:
            return _graphql_errors(exc.formatted)
        errors = validate(gql_schema, document)
        if errors:
            return _graphql_errors(*(e.formatted for e in errors))
        operation_name = payload.get("operationName")
        operation_name = operation_name if isinstance(operation_name, str) else None
        refused = scope_error(
            gql_schema, document, operation_name, state.client_scopes(grant.client_id)
        )
        if refused is not None:
            state.stats["scope_errors"] += 1
            return _graphql_errors(refused)
        variables = payload.get("variables")
        result = execute(
            gql_schema,
            document,
            root_value=root_value(state.users[grant.user_id], request),
            variable_values=variables if isinstance(variables, dict) else None,
            operation_name=operation_name,
        )
        if inspect.isawaitable(result):
            result = await result
        return JSONResponse(answer(result))

    def answer(result: ExecutionResult) -> dict[str, Any]:
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [profiles.as_graphql_java(e) for e in result.errors]
        patch = state.faults.user_patch
        if patch and isinstance(result.data, dict) and result.data.get("user"):
            # Upwork sending malformed data: bypasses the schema on purpose.
            body["data"]["user"] = {**result.data["user"], **patch}
        return body

    @app.post("/graphql")
    async def graphql_endpoint(request: Request) -> Response:
        faults = state.faults
        state.stats["graphql_requests"] += 1
        if (limited := rate_limited(request)) is not None:
            return limited
        if faults.graphql_delay:
            await asyncio.sleep(faults.graphql_delay)
        grant = bearer_grant(request)
        if grant is None:
            return unauthorized("Authentication failed: missing, invalid or expired token")
        if (faulty := fault_answer()) is not None:
            return faulty
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"errors": [{"message": "Body is not valid JSON"}]}, 400)
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return JSONResponse({"errors": [{"message": "Body needs a 'query' string"}]}, 400)
        if faults.graphql_errors:
            return _graphql_errors(
                {
                    "message": "Internal error while resolving the query",
                    "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                }
            )
        user = state.users[grant.user_id]
        tenant = request.headers.get("x-upwork-api-tenantid")
        if tenant is not None and tenant != user.organization_id:
            return _graphql_errors(
                {
                    "message": "Access denied to the requested organization",
                    "extensions": {"code": "FORBIDDEN"},
                },
                status=403,
            )
        return await run_query(payload, grant, request)

    # ----- test and demo controls -----------------------------------------------------

    @app.get("/_sandbox/portraits/{user_id}.svg")
    async def portrait(user_id: str, request: Request) -> Response:
        user = state.users.get(user_id)
        if user is None:
            return Response("no such user", status_code=404, media_type="text/plain")
        size = _portrait_size(request.query_params.get("size"))
        return Response(_portrait_svg(user, size), media_type="image/svg+xml")

    @app.middleware("http")
    async def guard_controls(request: Request, call_next: Any) -> Response:
        root = str(request.scope.get("root_path", ""))
        path = str(request.scope["path"])
        route = path[len(root) :] if root and path.startswith(root) else path
        if route.startswith(("/_sandbox/faults", "/_sandbox/stats")):
            refused = controls_refused(request)
            if refused is not None:
                return refused
        response: Response = await call_next(request)
        return response

    def controls_refused(request: Request) -> Response | None:
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

    @app.get("/_sandbox/faults")
    async def get_faults() -> dict[str, Any]:
        return state.faults.as_dict()

    @app.patch("/_sandbox/faults")
    async def patch_faults(request: Request) -> Response:
        try:
            values = await request.json()
            if not isinstance(values, dict):
                raise ValueError("send a JSON object")
            state.faults.update(values)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_request", "message": str(exc)}, 400)
        return JSONResponse(state.faults.as_dict())

    @app.delete("/_sandbox/faults")
    async def reset_faults() -> dict[str, Any]:
        state.config.faults = type(state.faults)()
        state.ip_limiter = IpRateLimiter()  # and forget which IPs were blocked
        return state.faults.as_dict()

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, int]:
        return dict(state.stats)

    @app.get("/")
    async def index(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            "index.html",
            {
                "users": list(state.users.values()),
                "clients": [(c, scope_labels(c.client_id)) for c in state.clients.values()],
                "base_url": _served_at(request),
            },
        )

    return app
