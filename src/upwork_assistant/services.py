"""The long-lived services one running app holds, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .auth.flow import FlowStore
from .auth.sessions import SessionService
from .auth.tokens import JWTIssuer
from .config import Settings
from .db.engine import Database
from .security.csrf import CsrfGuard
from .security.keys import DerivedKeys, KeyRing
from .upwork.graphql import UpworkGraphQLClient
from .upwork.oauth import UpworkOAuthClient
from .upwork.vault import TokenVault


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: KeyRing
    jwt: JWTIssuer
    csrf: CsrfGuard
    sessions: SessionService
    flows: FlowStore
    http: httpx.AsyncClient
    oauth: UpworkOAuthClient
    graphql: UpworkGraphQLClient
    vault: TokenVault

    @classmethod
    def build(cls, settings: Settings) -> Services:
        secrets = settings.secrets
        keys = DerivedKeys(secrets.secret_key)
        transport = httpx.AsyncHTTPTransport(retries=0)
        http = httpx.AsyncClient(
            transport=transport,
            timeout=settings.upwork_http_timeout,
            headers={"User-Agent": "upwork-assistant"},
        )
        keyring = KeyRing(secrets.token_encryption_keys)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
            keyring=keyring,
            jwt=JWTIssuer(
                keys.jwt_signing_key,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl_seconds=settings.access_token_ttl_seconds,
            ),
            csrf=CsrfGuard(keys.csrf),
            sessions=SessionService(keys.token_hash, settings.session_ttl_days),
            flows=FlowStore(keys.flow_cookie, settings.oauth_flow_ttl_seconds),
            http=http,
            oauth=UpworkOAuthClient(settings, transport),
            graphql=UpworkGraphQLClient(settings.graphql_url, http),
            vault=TokenVault(keyring),
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.db.dispose()
