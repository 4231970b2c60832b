"""The long-lived services one running app holds, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy.exc import DBAPIError

from .auth.accounts import AccountService
from .auth.flow import FlowStore
from .auth.mfa import MfaPolicy, MfaService, RelyingParty
from .auth.session_cache import SessionCache
from .auth.sessions import SessionService
from .auth.signin import SignInService
from .auth.tokens import JWTIssuer, JwtKeyStore
from .config import Settings
from .db.engine import Database
from .db.watch import PostgresWatch, SqliteWatch
from .security.audit import CHAIN_KEY
from .security.csrf import CsrfGuard
from .security.keys import DerivedKeys, KeyRing
from .security.ratelimit import Budget, RateLimiter
from .upwork.api import UpworkAPI
from .upwork.gate import GatedTransport, GatePolicy, UpworkGate
from .upwork.graphql import RetryPolicy, UpworkGraphQLClient
from .upwork.oauth import UpworkOAuthClient
from .upwork.sync import ProfileSyncService, SyncPolicy
from .upwork.vault import TokenVault, VaultPolicy
from .upwork.worker import Worker

log = structlog.get_logger("upwork_assistant")


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: KeyRing
    jwt: JWTIssuer
    csrf: CsrfGuard
    sessions: SessionService
    mfa: MfaService
    flows: FlowStore
    http: httpx.AsyncClient
    oauth: UpworkOAuthClient
    graphql: UpworkGraphQLClient
    gate: UpworkGate
    vault: TokenVault
    upwork: UpworkAPI
    sync: ProfileSyncService
    worker: Worker
    limiter: RateLimiter
    sync_budget: Budget
    signin_budget: Budget
    api_budget: Budget
    rate_limit_audit: Budget
    keys: DerivedKeys
    jwt_keys: JwtKeyStore
    signin: SignInService
    accounts: AccountService
    #: Tells this process's session cache about changes (None: the cache stays off).
    watch: SqliteWatch | PostgresWatch | None = None

    @classmethod
    def build(cls, settings: Settings) -> Services:
        s = settings
        keys = DerivedKeys(s.secrets.secret_key)
        db = Database(
            s.resolved_database_url,
            session_info={CHAIN_KEY: keys.audit_chain},
            pool_size=s.database_pool_size,
            max_overflow=s.database_max_overflow,
        )
        # Every request to Upwork (token endpoint and GraphQL) passes the host-wide gate.
        gate = UpworkGate(
            db,
            GatePolicy.from_spec(
                s.upwork_rate_limit, s.upwork_rate_limit_max_wait, s.upwork_backoff_seconds
            ),
        )
        transport = GatedTransport(httpx.AsyncHTTPTransport(retries=0), gate)
        http = httpx.AsyncClient(
            transport=transport,
            timeout=s.upwork_http_timeout,
            headers={"User-Agent": "upwork-assistant"},
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        keyring = KeyRing(s.secrets.token_encryption_keys)
        limiter = RateLimiter(f"async+{s.redis_url}" if s.redis_url else "async+memory://")
        oauth = UpworkOAuthClient(s, transport)
        graphql = UpworkGraphQLClient(
            s.graphql_url,
            http,
            RetryPolicy(attempts=s.upwork_retry_attempts, backoff=s.upwork_retry_backoff),
        )
        vault = TokenVault(
            keyring,
            db,
            oauth,
            VaultPolicy(
                refresh_margin=timedelta(seconds=s.upwork_refresh_margin_seconds),
                lease=timedelta(seconds=s.upwork_refresh_lease_seconds),
            ),
        )
        upwork = UpworkAPI(vault, graphql)
        jwt = JWTIssuer(
            keys.jwt_signing_key,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl_seconds=s.access_token_ttl_seconds,
        )
        sync = ProfileSyncService(
            db,
            upwork,
            SyncPolicy(
                interval=timedelta(seconds=s.profile_sync_interval_seconds),
                retry_after_failure=timedelta(seconds=s.profile_sync_retry_seconds),
                content_ttl=timedelta(seconds=s.upwork_content_ttl_seconds),
                image_hosts=s.image_hosts,
            ),
        )
        cache = SessionCache(max_age=s.session_cache_seconds)
        sessions = SessionService(
            keys.token_hash,
            s.session_ttl_days,
            jwt,
            s.refresh_grace_seconds,
            s.session_max_days,
            cache,
        )
        mfa = MfaService(
            db,
            keyring,
            keys.mfa_cookie,
            MfaPolicy(),
            issuer=s.app_name,
            rp=RelyingParty.from_base_url(s.app_base_url, s.app_name, s.is_production),
        )
        return cls(
            settings=s,
            db=db,
            keyring=keyring,
            jwt=jwt,
            csrf=CsrfGuard(keys.csrf),
            sessions=sessions,
            mfa=mfa,
            flows=FlowStore(keys.flow_cookie, s.oauth_flow_ttl_seconds, s.cookies.flow_prefix),
            http=http,
            oauth=oauth,
            graphql=graphql,
            gate=gate,
            vault=vault,
            upwork=upwork,
            sync=sync,
            worker=Worker(
                db,
                vault,
                sync,
                keepalive_margin=timedelta(seconds=s.upwork_keepalive_margin_seconds),
                interval=s.worker_interval_seconds,
                audit_signing_key=keys.audit_signing_key,
                audit_retention_days=s.audit_retention_days,
            ),
            limiter=limiter,
            sync_budget=limiter.budget("profile-sync", s.profile_sync_rate_limit),
            signin_budget=limiter.budget("signin", s.signin_rate_limit),
            api_budget=limiter.budget("api", s.api_rate_limit),
            rate_limit_audit=limiter.budget("rate-limit-audit", "1/minute"),
            keys=keys,
            jwt_keys=JwtKeyStore(db, keyring, jwt),
            signin=SignInService(db, oauth, graphql, vault, mfa, sessions, s.image_hosts),
            accounts=AccountService(db, sessions, mfa, keys.audit_chain),
            watch=_watch(db, cache) if s.session_cache_seconds > 0 else None,
        )

    async def start(self) -> None:
        """Load the shared JWT signing keys. With the database away, start anyway on the
        initial key (readyz says 503); the periodic reload picks the keys up later."""
        if isinstance(self.watch, PostgresWatch):
            self.watch.start()
        try:
            await self.jwt_keys.load()
        except (DBAPIError, OSError) as exc:
            log.warning("jwt_keys_not_loaded", error_type=type(exc).__name__)

    async def aclose(self) -> None:
        if isinstance(self.watch, PostgresWatch):
            await self.watch.stop()
        elif self.watch is not None:
            self.watch.close()
        await self.http.aclose()
        await self.db.dispose()


def _watch(db: Database, cache: SessionCache) -> SqliteWatch | PostgresWatch | None:
    """The change watch that keeps ``cache`` honest for this database (db/watch.py). A
    PostgreSQL watch is started by `Services.start` (serving processes only); until it
    listens, the cache stays off."""
    db.after_auth_change.append(cache.clear_all)
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None  # every connection its own database: nothing to watch
        watch = SqliteWatch(url.database, cache.clear_all)
        cache.poll = watch.poll
        cache.watching = True
        return watch
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        pg = PostgresWatch(dsn, cache.changed_user, cache.set_watching)
        cache.poll = pg.quiet
        return pg
    return None
