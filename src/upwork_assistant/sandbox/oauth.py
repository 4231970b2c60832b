"""Upwork's OAuth 2.0 endpoints: the consent page and the token endpoint.

- ``GET/POST /ab/account-security/oauth2/authorize``: consent page (pick a user, Allow/Deny)
- ``POST /api/v3/oauth2/token``: ``authorization_code`` and ``refresh_token`` grants
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import QueryParams

from .common import NO_STORE, TEMPLATES, error_page, rate_limited, scope_labels
from .state import CONSENT_TTL, Faults, PendingConsent, SandboxClient, SandboxState

AUTHORIZE_PATH = "/ab/account-security/oauth2/authorize"


def oauth_router(state: SandboxState) -> APIRouter:
    """The authorize (consent) and token endpoints, on ``state``."""
    router = APIRouter()

    @router.get(AUTHORIZE_PATH, response_class=HTMLResponse)
    async def authorize_endpoint(request: Request) -> Response:
        return authorize(state, request)

    @router.post(AUTHORIZE_PATH)
    async def consent_endpoint(request: Request) -> Response:
        return await consent(state, request)

    @router.post("/api/v3/oauth2/token")
    async def token_endpoint(request: Request) -> Response:
        return await token(state, request)

    return router


# ----- helpers --------------------------------------------------------------------------


def oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 6749 section 5.2 error answer."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**NO_STORE, **(headers or {})},
    )


def redirect_with(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=302)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# ----- authorization endpoint -----------------------------------------------------------


def pkce_refusal(mode: str, challenge: str | None, method: str | None) -> str | None:
    """Why the authorize request's PKCE parameters are refused under the ``pkce`` fault
    ``mode``, or None."""
    if challenge is None or mode == "ignore":
        return None
    if mode == "reject":
        return "PKCE is not supported"
    if method != "S256" or not 43 <= len(challenge) <= 128:
        return "PKCE: code_challenge_method must be S256"
    return None


def authorize(state: SandboxState, request: Request) -> Response:
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
    refused = authorize_refusal(state, q, redirect_uri)
    if refused is not None:
        return refused
    return consent_page(state, request, client, redirect_uri)


def authorize_refusal(
    state: SandboxState, q: QueryParams, redirect_uri: str
) -> RedirectResponse | None:
    """The error redirect for a wrong response_type or refused PKCE, or None."""
    state_param = q.get("state")
    if q.get("response_type") != "code":
        return redirect_with(
            redirect_uri,
            {
                "error": "unsupported_response_type",
                "error_description": "response_type must be 'code'",
                "state": state_param,
            },
        )
    refusal = pkce_refusal(
        state.faults.pkce, q.get("code_challenge"), q.get("code_challenge_method")
    )
    if refusal is not None:
        return redirect_with(
            redirect_uri,
            {"error": "invalid_request", "error_description": refusal, "state": state_param},
        )
    return None


def consent_page(
    state: SandboxState, request: Request, client: SandboxClient, redirect_uri: str
) -> Response:
    q = request.query_params
    consent_id = state.new_consent(
        PendingConsent(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=q.get("state"),
            scope=q.get("scope"),
            # "ignore": the challenge is accepted and forgotten, the verifier never checked.
            code_challenge=None if state.faults.pkce == "ignore" else q.get("code_challenge"),
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
            "scopes": scope_labels(state, client.client_id),
            "action": request.url.path,
        },
    )


async def consent(state: SandboxState, request: Request) -> Response:
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
        return denied(state, request, pending)
    user_id = str(form.get("user_id", ""))
    if user_id not in state.users:
        state.consents[consent_id] = pending  # let the user pick again
        return error_page(request, "Pick one of the sandbox users.", 400)
    code = state.issue_code(pending, user_id)
    state.stats["codes_issued"] += 1
    return redirect_with(pending.redirect_uri, {"code": code, "state": pending.state})


def denied(state: SandboxState, request: Request, pending: PendingConsent) -> Response:
    """The answer to Deny: a page, or (``deny_redirect`` fault) Upwork's error redirect."""
    if not state.faults.deny_redirect:
        return TEMPLATES.TemplateResponse(request, "denied.html", {})
    return redirect_with(
        pending.redirect_uri,
        {
            "error": "access_denied",
            "error_description": "The user denied access",
            "state": pending.state,
        },
    )


# ----- token endpoint -------------------------------------------------------------------


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
    state: SandboxState, request: Request, form: dict[str, str], allow_basic: bool
) -> tuple[str | None, bool]:
    """Returns (client_id or None, used_basic)."""
    basic = basic_credentials(request) if allow_basic else None
    if basic is not None:
        cid, secret = basic
    else:
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
    client = state.clients.get(cid)
    if client is None or not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
        return None, basic is not None
    return cid, basic is not None


def exchange_code(state: SandboxState, form: dict[str, str], client_id: str) -> Response:
    state.stats["token_authorization_code"] += 1
    code_value = form.get("code", "")
    issued = state.codes.get(code_value)
    if issued is None or issued.client_id != client_id:
        return oauth_error("invalid_grant", "authorization code is invalid")
    if issued.used:
        # RFC 6749 section 4.1.2: a code used twice revokes what it gave.
        state.revoke_family(code_value)
        return oauth_error("invalid_grant", "authorization code was already used")
    issued.used = True
    if issued.expires_at < time.time():
        return oauth_error("invalid_grant", "authorization code has expired")
    if form.get("redirect_uri") != issued.redirect_uri:
        return oauth_error("invalid_grant", "redirect_uri does not match")
    if issued.code_challenge is not None and not pkce_verified(
        form.get("code_verifier", ""), issued.code_challenge
    ):
        return oauth_error("invalid_grant", "PKCE verification failed")
    body = state.issue_tokens(client_id, issued.user_id, family=code_value)
    state.stats["tokens_issued"] += 1
    return JSONResponse(body, headers=NO_STORE)


def pkce_verified(verifier: str, challenge: str) -> bool:
    return 43 <= len(verifier) <= 128 and hmac.compare_digest(s256(verifier), challenge)


def refresh(state: SandboxState, form: dict[str, str], client_id: str) -> Response:
    old = form.get("refresh_token", "")
    grant = state.refresh_tokens.get(old)
    if grant is None or grant.client_id != client_id or not grant.valid(time.time()):
        return oauth_error("invalid_grant", "refresh token is invalid or expired")
    if state.faults.rotate_refresh_token:
        state.retire_refresh_token(grant)
        body = state.issue_tokens(client_id, grant.user_id, grant.family)
    else:
        body = state.issue_tokens(client_id, grant.user_id, grant.family, refresh_token=old)
    return JSONResponse(body, headers=NO_STORE)


async def token_fault(state: SandboxState, faults: Faults, request: Request) -> Response | None:
    """The per-IP limit, then the token faults (delay, status, non-JSON), or None."""
    if (limited := rate_limited(state, request)) is not None:
        return limited
    if faults.token_delay:
        await asyncio.sleep(faults.token_delay)
    if faults.token_status:
        return JSONResponse({"error": "server_error"}, status_code=faults.token_status)
    if faults.token_non_json:
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
    return None


async def token(state: SandboxState, request: Request) -> Response:
    faults = state.faults
    state.stats["token_requests"] += 1
    if (faulty := await token_fault(state, faults, request)) is not None:
        return faulty
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return oauth_error("invalid_request", "use application/x-www-form-urlencoded")
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
        return oauth_error("invalid_request", "Missing parameters: client_id")
    client_id, used_basic = authenticate_client(state, request, form, allow_basic=basic_ok)
    if client_id is None:
        return oauth_error(
            "invalid_client",
            "client authentication failed",
            401,
            {"WWW-Authenticate": 'Basic realm="upwork"'} if used_basic else None,
        )
    if grant_type == "authorization_code":
        return exchange_code(state, form, client_id)
    if grant_type == "refresh_token":
        return refresh(state, form, client_id)
    return oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
