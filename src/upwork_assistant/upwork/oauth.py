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
from .errors import UpworkError, UpworkInvalidGrant, UpworkUnavailable

#: Upwork does not document a refresh token lifetime in the token answer; it is two weeks.
REFRESH_TOKEN_LIFETIME = timedelta(days=14)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    token_type: str
    scope: str | None
    access_expires_at: datetime | None  # None: Upwork gave no expires_in (long-lived)
    refresh_expires_at: datetime | None

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
        self._transport = transport

    def _client(self) -> AsyncOAuth2Client:
        s = self._settings
        return AsyncOAuth2Client(
            client_id=s.oauth_client_id,
            client_secret=s.oauth_client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
            code_challenge_method="S256",
            redirect_uri=s.redirect_uri,
            timeout=s.upwork_http_timeout,
            transport=self._transport,
        )

    def authorization_request(self) -> AuthorizationRequest:
        state = secrets.token_urlsafe(32)  # 256 random bits
        verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
        url, _ = self._client().create_authorization_url(
            self._settings.authorize_url, state=state, code_verifier=verifier
        )
        return AuthorizationRequest(url=url, state=state, code_verifier=verifier)

    async def exchange_code(self, code: str, code_verifier: str) -> TokenSet:
        try:
            raw = await _token_endpoint(
                self._client().fetch_token(
                    self._settings.token_url,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    redirect_uri=self._settings.redirect_uri,
                )
            )
        except UpworkInvalidGrant:
            raise UpworkError(
                "code_rejected",
                "Upwork did not accept the sign-in code (it may have expired or been "
                "used already). Please sign in again.",
                400,
            ) from None
        return parse_token_response(raw)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Trade a refresh token for a new pair. Upwork may or may not rotate the refresh
        token: without a new one the old one is kept. Raises UpworkInvalidGrant when the
        refresh token is expired or revoked."""
        raw = await _token_endpoint(
            self._client().refresh_token(self._settings.token_url, refresh_token=refresh_token)
        )
        return parse_token_response(raw, previous_refresh=refresh_token)


async def _token_endpoint(request: Awaitable[Any]) -> dict[str, Any]:
    """Await a token request; turn what Authlib and httpx raise into typed UpworkErrors."""
    try:
        return dict(await request)
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            raise UpworkInvalidGrant() from None
        raise UpworkError(
            "token_exchange_failed",
            f"Upwork's token endpoint refused the request ({exc.error}).",
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
    if isinstance(expires_in, int | float | str) and str(expires_in).strip().isdigit():
        access_expires_at = now + timedelta(seconds=int(expires_in))
    token_type = raw.get("token_type")
    scope = raw.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        scope=scope[:1024] if isinstance(scope, str) else None,
        access_expires_at=access_expires_at,
        refresh_expires_at=now + REFRESH_TOKEN_LIFETIME if refresh else None,
    )
