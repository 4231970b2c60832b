"""The Upwork OAuth 2.0 client (authorization code grant with PKCE), built on Authlib."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import authlib.deprecate  # noqa: F401 - installs its own "always" filter first
import httpx

with warnings.catch_warnings():
    # Authlib would rather use the "httpx2" fork; plain httpx is what this project uses.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from ..config import Settings
from ..db.types import utcnow
from . import metrics
from .errors import UpworkError, UpworkInvalidGrant, UpworkUnavailable, upwork_text

#: Upwork does not send a refresh token lifetime in the token answer; it is two weeks, and
#: after a rotation the old one keeps working for 24 hours (Upwork's maintainer in
#: upwork/python-upwork-oauth2 issue #11: "a new refresh token is valid for 14 days, while
#: we change expiration date for old refresh token to now + 24 hours").
REFRESH_TOKEN_LIFETIME = timedelta(days=14)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    token_type: str
    scope: str | None
    access_expires_at: datetime | None  # None: Upwork gave no expires_in (long-lived)
    refresh_expires_at: datetime | None
    #: ``expires_in`` as Upwork sent it and its JSON type, e.g. ``86400 (number)``, for
    #: ``upwork check`` (Upwork has been seen to send it as a string).
    expires_in_as_sent: str | None = None

    def __repr__(self) -> str:  # never show the tokens themselves
        return (
            f"TokenSet(token_type={self.token_type!r}, "
            f"access_expires_at={self.access_expires_at!r})"
        )


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    state: str
    code_verifier: str


class UpworkOAuthClient:
    """Makes authorization URLs and exchanges codes at Upwork's token endpoint.

    Shares one HTTP connection pool (``transport``) across all requests; a fresh Authlib
    client object per exchange keeps one user's tokens from ever sitting on a shared object.
    """

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport) -> None:
        self._settings = settings
        self.transport = transport

    def _client(self, auth_method: str = "client_secret_post") -> AsyncOAuth2Client:
        s = self._settings
        # Client credentials always in the form body: Upwork refused a refresh whose
        # credentials came as HTTP Basic ("400 Missing parameters: client_id",
        # upwork/node-upwork-oauth2 issue #29; that SDK moved them to the body in v2.2.2).
        return AsyncOAuth2Client(
            client_id=s.oauth_client_id,
            client_secret=s.oauth_client_secret,
            token_endpoint_auth_method=auth_method,
            code_challenge_method="S256" if s.upwork_use_pkce else None,
            redirect_uri=s.redirect_uri,
            timeout=s.upwork_http_timeout,
            transport=self.transport,
        )

    def authorization_request(self) -> AuthorizationRequest:
        """A new authorization URL, its state and (with PKCE on) the code verifier."""
        state = secrets.token_urlsafe(32)  # 256 random bits
        # 86 characters, within RFC 7636's 43..128; empty when PKCE is off.
        verifier = secrets.token_urlsafe(64) if self._settings.upwork_use_pkce else ""
        url, _ = self._client().create_authorization_url(
            self._settings.authorize_url, state=state, code_verifier=verifier or None
        )
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier)

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        """Trade the callback's code for tokens (with the PKCE verifier when one was made)."""
        extra = {"code_verifier": code_verifier} if code_verifier else {}
        try:
            raw = await _token_endpoint(
                "token:authorization_code",
                self._client().fetch_token(
                    self._settings.token_url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=self._settings.redirect_uri,
                    **extra,
                ),
            )
        except UpworkInvalidGrant as exc:
            raise UpworkError(
                "code_rejected",
                "Upwork did not accept the sign-in code (it may have expired or been "
                "used already). Please sign in again.",
                400,
                exc.upwork_message,
            ) from None
        return parse_token_response(raw)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new pair. Upwork may or may not rotate the refresh
        token: without a new one the old one is kept. Raises UpworkInvalidGrant when the
        refresh token is expired or revoked."""
        raw = await _token_endpoint(
            "token:refresh_token",
            self._client().refresh_token(self._settings.token_url, refresh_token=refresh_token),
        )
        return parse_token_response(raw, previous_refresh=refresh_token)

    async def refresh_with_basic(self, refresh_token: str) -> TokenSet:
        """A refresh with the credentials as HTTP Basic: only ``upwork check`` does this,
        to report whether Upwork still refuses it."""
        raw = await _token_endpoint(
            "token:refresh_token",
            self._client("client_secret_basic").refresh_token(
                self._settings.token_url, refresh_token=refresh_token
            ),
        )
        return parse_token_response(raw, previous_refresh=refresh_token)


async def _token_endpoint(operation: str, request: Awaitable[Any]) -> dict[str, Any]:
    """Await a token request (counted as ``operation``); turn what Authlib and httpx raise
    into typed UpworkErrors. Upwork's own description of an OAuth error is kept."""
    with metrics.observe(operation):
        return await _token_answer(request)


async def _token_answer(request: Awaitable[Any]) -> dict[str, Any]:
    try:
        return dict(await request)
    except OAuthError as exc:
        said = upwork_text(f"{exc.error}: {exc.description}" if exc.description else exc.error)
        if exc.error == "invalid_grant":
            raise UpworkInvalidGrant(said) from None
        raise UpworkError(
            "token_exchange_failed",
            f"Upwork's token endpoint refused the request ({exc.error}).",
            upwork_message=said,
        ) from None
    except httpx.TimeoutException:
        raise UpworkUnavailable() from None
    except httpx.TransportError:
        raise UpworkUnavailable("Upwork could not be reached. Please try again.") from None
    except (httpx.HTTPStatusError, ValueError):
        raise UpworkError(
            "token_exchange_failed",
            "Upwork's token endpoint answered with an error. Please try again later.",
        ) from None


def _seconds(value: object) -> int | None:
    """``expires_in`` as whole seconds: a number or a numeric string (Upwork has sent
    both); None for anything else, which we take as "no expiry given"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return int(seconds) if 0 < seconds < 10 * 365 * 86400 else None


def parse_token_response(raw: dict[str, Any], previous_refresh: str | None = None) -> TokenSet:
    access = raw.get("access_token")
    if not isinstance(access, str) or not access:
        raise UpworkError("token_exchange_failed", "Upwork's token answer had no access token.")
    refresh = raw.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous_refresh
    now = utcnow()
    expires_in = raw.get("expires_in")
    access_expires_at = None
    seconds = _seconds(expires_in)
    if seconds is not None:
        access_expires_at = now + timedelta(seconds=seconds)
    token_type = raw.get("token_type")
    scope = raw.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        scope=scope[:1024] if isinstance(scope, str) else None,
        access_expires_at=access_expires_at,
        refresh_expires_at=now + REFRESH_TOKEN_LIFETIME if refresh else None,
        expires_in_as_sent=None
        if expires_in is None
        else f"{str(expires_in)[:16]} ({'string' if isinstance(expires_in, str) else 'number'})",
    )
