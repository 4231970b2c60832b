"""All settings, read from the environment in one place.

Secrets: in development, a missing ``SECRET_KEY`` or ``TOKEN_ENCRYPTION_KEYS`` is generated
once into ``DATA_DIR/secrets.json`` (mode 0600) and reused on every later start. In
production every secret must be given and start-up stops with a clear message otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

UPWORK_AUTHORIZE_URL = "https://www.upwork.com/ab/account-security/oauth2/authorize"
UPWORK_TOKEN_URL = "https://www.upwork.com/api/v3/oauth2/token"  # noqa: S105 - a URL
UPWORK_GRAPHQL_URL = "https://api.upwork.com/graphql"

_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
#: A host name, or ``*.`` and a domain: what UPWORK_IMAGE_HOSTS may list.
IMAGE_HOST_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})+$")

#: Where Upwork sends the browser back after consent: the path of the redirect URI
#: registered on the API key (with APP_BASE_URL in front), the route that finishes the
#: sign-in, the only path whose URL carries a code (kept out of logs and referrers).
CALLBACK_PATH = "/api/auth/upwork/callback"

#: Where the main app mounts the Upwork sandbox in sandbox mode.
SANDBOX_PREFIX = "/sandbox/upwork"
#: The client id the main app registers with its own mounted sandbox.
SANDBOX_CLIENT_ID = "upwork-assistant-sandbox"


@dataclass(frozen=True)
class CookieNames:
    """Cookie names: over https with the ``__Host-`` prefix (``__Secure-`` where the path is
    not ``/``), as OWASP ASVS 3.3.1 asks; over plain http (development) the plain names."""

    access: str
    refresh: str
    csrf: str
    mfa: str
    flow_prefix: str

    @classmethod
    def for_transport(cls, secure: bool) -> CookieNames:
        if secure:
            return cls(
                "__Host-access_token",
                "__Secure-refresh_token",
                "__Host-csrf_token",
                "__Host-mfa_challenge",
                "__Secure-ua_oauth_",
            )
        return cls("access_token", "refresh_token", "csrf_token", "mfa_challenge", "ua_oauth_")


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    app_env: Literal["development", "production"] = "development"
    #: The product's display name. Upwork's API terms forbid its brand in our name, so it
    #: must not contain "Upwork" (docs/upwork-terms.md).
    app_name: str = Field(default="Freelance Desk", min_length=1, max_length=60)
    app_base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("data")
    database_url: str | None = None
    #: PostgreSQL connection pool per process (SQLite ignores them).
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)

    secret_key: str | None = None
    token_encryption_keys: str | None = None

    upwork_client_id: str | None = None
    upwork_client_secret: str | None = None
    upwork_redirect_uri: str | None = None
    upwork_authorize_url: str = UPWORK_AUTHORIZE_URL
    upwork_token_url: str = UPWORK_TOKEN_URL
    upwork_graphql_url: str = UPWORK_GRAPHQL_URL
    #: Seconds to wait for Upwork's token and GraphQL endpoints.
    upwork_http_timeout: float = Field(default=10.0, gt=0, le=120)

    #: Refresh an Upwork access token when less than this is left of it.
    upwork_refresh_margin_seconds: int = Field(default=300, ge=0, le=86400)
    #: The worker renews connections whose refresh token would die within this margin.
    upwork_keepalive_margin_seconds: int = Field(default=2 * 86400, ge=0, le=13 * 86400)
    #: How long one process may hold a user's refresh lease before others take over.
    upwork_refresh_lease_seconds: float = Field(default=30.0, gt=0, le=600)
    #: Our own budget for calls to Upwork (the `limits` syntax), shared by every process
    #: on the host: Upwork limits per IP (10/s; 40,000/day in older terms).
    upwork_rate_limit: str = "8/second;35000/day"
    #: After a 429 without Retry-After, send nothing to Upwork for this long (Upwork lifts
    #: a block a minute after the last rate-limited request). Shared by every process.
    upwork_backoff_seconds: float = Field(default=60.0, ge=1, le=3600)
    #: Send a PKCE challenge with the authorization request (`upwork check` tells whether
    #: Upwork accepts it; turn off only if it reports "rejected").
    upwork_use_pkce: bool = True
    #: Upwork content (names, email, photo, profile) is kept at most this long (Upwork's
    #: API terms: 24 hours at most), then purged by the worker.
    upwork_content_ttl_seconds: int = Field(default=86400, ge=60, le=86400)
    #: Hosts a freelancer's portrait may come from (https only; ``*.example.com`` allowed):
    #: Upwork serves portraits from www.upwork.com/profile-portraits/ and, in older
    #: answers, the odesk-prod-portraits bucket. Anything else is dropped at sync, and the
    #: pages' Content-Security-Policy lets images load from these hosts only.
    upwork_image_hosts: str = "www.upwork.com,odesk-prod-portraits.s3.amazonaws.com"
    #: When the budget is spent, wait at most this long for room before answering 503.
    upwork_rate_limit_max_wait: float = Field(default=2.0, ge=0, le=60)
    #: Attempts of an idempotent GraphQL query on 5xx and network errors (a 429 is never
    #: retried: the gate holds every call back instead).
    upwork_retry_attempts: int = Field(default=3, ge=1, le=10)
    #: Base delay of the exponential backoff between those attempts.
    upwork_retry_backoff: float = Field(default=0.25, ge=0, le=30)

    #: Upwork content older than this is fetched again when its user uses the product
    #: (never by a timer alone: Upwork's terms forbid refreshing a cache for its own sake).
    profile_sync_interval_seconds: int = Field(default=6 * 3600, ge=60, le=86400)
    #: After a failed fetch-on-use, wait this long before that user's next automatic try.
    profile_sync_retry_seconds: int = Field(default=3600, ge=10)
    #: Manual syncs allowed per user (`limits` syntax): each user's share of the Upwork
    #: budget; counted in Redis when configured, so every process agrees.
    profile_sync_rate_limit: str = "5/minute;50/day"
    #: Seconds between the worker's passes.
    worker_interval_seconds: float = Field(default=60.0, gt=0)
    #: Also run the worker's loop inside `serve`. Unset: yes for a single-process `serve`,
    #: no with `--workers N` (run `upwork-assistant worker` beside it then).
    worker_in_serve: bool | None = None
    #: Scopes the built-in sandbox grants this app's key (comma-separated sandbox scope
    #: ids; `all` for every one). The default is the key docs/upwork-setup.md asks an
    #: operator for: Common Entities and Freelancer Profile (email, organization and the
    #: profile's country stay refused, as their scopes are unconfirmed). Empty: the
    #: sandbox's own default, a key with Common Entities only.
    sandbox_scopes: str = "common-entities,freelancer-profile"

    #: Security-log records older than this are pruned by the worker.
    audit_retention_days: int = Field(default=90, ge=1, le=3650)

    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    session_ttl_days: int = Field(default=30, ge=1, le=365)
    #: However active, a session ends this many days after its sign-in.
    session_max_days: int = Field(default=90, ge=1, le=3650)
    #: How long a just-rotated refresh token still gives the same new pair to the same
    #: client racing itself (RFC 9700 4.14); outside it, reuse revokes the session.
    refresh_grace_seconds: float = Field(default=5.0, ge=0, le=60)
    oauth_flow_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    #: The session check's per-process memory (auth/session_cache.py): at most this many
    #: seconds per entry, and only while a change watch (SQLite's data_version, PostgreSQL
    #: LISTEN) reports every change at once. 0 turns it off: a database read per request.
    session_cache_seconds: float = Field(default=60.0, ge=0, le=600)

    log_level: str = "INFO"

    #: Per client IP on the sign-in endpoints (authorize, callback, MFA code).
    signin_rate_limit: str = "20/minute"
    #: Per user on the API (the product's rule: 100 requests a minute).
    api_rate_limit: str = "100/minute"
    #: Shared rate-limit counters for all instances (e.g. redis://host:6379/0).
    redis_url: str | None = None
    #: Comma-separated addresses of reverse proxies whose X-Forwarded-For/-Proto are
    #: believed. Empty: never believed.
    trusted_proxies: str = ""
    #: Comma-separated origins allowed to call the API from a browser (CORS). Empty: none.
    cors_origins: str = ""
    #: Serve /metrics (Prometheus) to requests bearing this token; unset: no /metrics.
    metrics_token: str | None = None
    #: Largest request body accepted, in bytes.
    max_request_bytes: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    #: Let APP_ENV=production run on the built-in sandbox (demos only).
    allow_sandbox_in_production: bool = False
    #: Admin routes only for admins with MFA on. Unset: on when APP_ENV=production (an
    #: admin's stolen Upwork sign-in alone must not reach every user's data), off in
    #: development (so the sandbox's admins can try the pages without an authenticator).
    admin_require_mfa: bool | None = None
    #: In production the built-in sandbox's fault switches and counters are off; with this
    #: token they answer its bearer only. (In development they are open, for tests.)
    sandbox_controls_token: str | None = None

    @field_validator("app_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("APP_BASE_URL must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("upwork_image_hosts")
    @classmethod
    def _image_hosts(cls, value: str) -> str:
        for host in (h.strip() for h in value.split(",") if h.strip()):
            if not IMAGE_HOST_RE.fullmatch(host.lower()):
                raise ValueError(
                    f"UPWORK_IMAGE_HOSTS: {host!r} is not a host name (e.g. www.upwork.com "
                    "or *.example.com; no scheme, port or path)"
                )
        return value

    @field_validator("app_name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        value = " ".join(value.split())
        if "upwork" in value.lower():
            raise ValueError(
                "APP_NAME must not contain 'Upwork': Upwork's API terms do not allow its "
                "brand in an application's name (docs/upwork-terms.md)"
            )
        return value

    @field_validator(
        "upwork_client_id",
        "upwork_client_secret",
        "secret_key",
        "token_encryption_keys",
        "database_url",
        "upwork_redirect_uri",
        "redis_url",
        "metrics_token",
        "sandbox_controls_token",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator(
        "upwork_rate_limit", "profile_sync_rate_limit", "signin_rate_limit", "api_rate_limit"
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '8/second;35000/day': {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _pair(self) -> Settings:
        if bool(self.upwork_client_id) != bool(self.upwork_client_secret):
            raise ValueError(
                "set both UPWORK_CLIENT_ID and UPWORK_CLIENT_SECRET (real Upwork), "
                "or neither (sandbox mode)"
            )
        return self

    # ----- derived values -------------------------------------------------------------

    @property
    def sandbox_mode(self) -> bool:
        return not self.upwork_client_id

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def admin_mfa_required(self) -> bool:
        """ADMIN_REQUIRE_MFA, or by default whether this is production."""
        if self.admin_require_mfa is None:
            return self.is_production
        return self.admin_require_mfa

    @property
    def cookie_secure(self) -> bool:
        return self.app_base_url.startswith("https://")

    @cached_property
    def cookies(self) -> CookieNames:
        return CookieNames.for_transport(self.cookie_secure)

    @property
    def redirect_uri(self) -> str:
        return self.upwork_redirect_uri or f"{self.app_base_url}{CALLBACK_PATH}"

    @property
    def resolved_database_url(self) -> str:
        return normalise_database_url(
            self.database_url or f"sqlite:///{(self.data_dir / 'upwork_assistant.db').resolve()}"
        )

    @cached_property
    def secrets(self) -> ResolvedSecrets:
        return resolve_secrets(self)

    @property
    def oauth_client_id(self) -> str:
        return self.upwork_client_id or SANDBOX_CLIENT_ID

    @property
    def oauth_client_secret(self) -> str:
        return self.upwork_client_secret or self.secrets.sandbox_client_secret

    @property
    def authorize_url(self) -> str:
        if self.sandbox_mode:
            return f"{self.app_base_url}{SANDBOX_PREFIX}/ab/account-security/oauth2/authorize"
        return self.upwork_authorize_url

    @property
    def token_url(self) -> str:
        if self.sandbox_mode:
            return f"{self.app_base_url}{SANDBOX_PREFIX}/api/v3/oauth2/token"
        return self.upwork_token_url

    @property
    def graphql_url(self) -> str:
        if self.sandbox_mode:
            return f"{self.app_base_url}{SANDBOX_PREFIX}/graphql"
        return self.upwork_graphql_url

    @property
    def image_hosts(self) -> tuple[str, ...]:
        """Where portraits may come from: UPWORK_IMAGE_HOSTS, and a sandbox's own origin
        (it serves its made-up users' portraits) when the API is not Upwork's."""
        hosts = [h.strip().lower() for h in self.upwork_image_hosts.split(",") if h.strip()]
        api = urlsplit(self.graphql_url)
        if api.hostname and api.hostname != urlsplit(UPWORK_GRAPHQL_URL).hostname:
            hosts.append(f"{api.scheme}://{api.netloc}")
        return tuple(dict.fromkeys(hosts))

    @property
    def jwt_issuer(self) -> str:
        return self.app_base_url

    @property
    def jwt_audience(self) -> str:
        return "upwork-assistant"


def normalise_database_url(url: str) -> str:
    """Accept the plain ``sqlite:///`` and ``postgresql://`` forms; use the async drivers."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


class ResolvedSecrets:
    """The secrets the app runs with, after generation (development) or checks (production)."""

    def __init__(self, secret_key: str, token_encryption_keys: str) -> None:
        self.secret_key = secret_key
        self.token_encryption_keys = token_encryption_keys

    @property
    def sandbox_client_secret(self) -> str:
        # Derived, so the app and its mounted sandbox agree without another secret to keep.
        return hmac.new(
            self.secret_key.encode(), b"sandbox-client-secret", hashlib.sha256
        ).hexdigest()


def new_encryption_key_spec() -> str:
    """A fresh key ring entry ``kid:base64(32 random bytes)``."""
    kid = "k" + secrets.token_hex(4)
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"


def resolve_secrets(settings: Settings) -> ResolvedSecrets:
    missing = [
        name
        for name, value in (
            ("SECRET_KEY", settings.secret_key),
            ("TOKEN_ENCRYPTION_KEYS", settings.token_encryption_keys),
        )
        if not value
    ]
    if settings.is_production:
        if settings.sandbox_mode and not settings.allow_sandbox_in_production:
            missing += ["UPWORK_CLIENT_ID", "UPWORK_CLIENT_SECRET"]
        if missing:
            raise ConfigError(
                "APP_ENV=production refuses to start without these settings: "
                + ", ".join(missing)
                + ". Set them in the environment (see README, 'Configuration'); the "
                "sandbox needs ALLOW_SANDBOX_IN_PRODUCTION=true."
            )
        if not settings.cookie_secure:
            raise ConfigError(
                "APP_ENV=production refuses to start with an http APP_BASE_URL: serve it "
                "over https (cookies are Secure and __Host- prefixed there)."
            )
        plain = [
            name
            for name, url in (
                ("UPWORK_REDIRECT_URI", settings.redirect_uri),
                ("UPWORK_AUTHORIZE_URL", settings.upwork_authorize_url),
                ("UPWORK_TOKEN_URL", settings.upwork_token_url),
                ("UPWORK_GRAPHQL_URL", settings.upwork_graphql_url),
            )
            if not settings.sandbox_mode and not url.startswith("https://")
        ]
        if plain:
            raise ConfigError(
                "APP_ENV=production refuses plain-http Upwork endpoints: " + ", ".join(plain)
            )
    if not missing:
        assert settings.secret_key and settings.token_encryption_keys
        if len(settings.secret_key) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters long")
        return ResolvedSecrets(settings.secret_key, settings.token_encryption_keys)
    stored = _load_or_create_dev_secrets(settings.data_dir)
    return ResolvedSecrets(
        settings.secret_key or stored["SECRET_KEY"],
        settings.token_encryption_keys or stored["TOKEN_ENCRYPTION_KEYS"],
    )


def _load_or_create_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Generate development secrets once into ``data_dir/secrets.json`` (mode 0600)."""
    path = data_dir / "secrets.json"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    generated = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key_spec(),
    }
    try:
        # O_EXCL: when several processes start at once, exactly one writes the file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            json.dump(generated, handle)
        return generated
    for _ in range(50):  # another process may still be writing it
        try:
            stored = json.loads(path.read_text())
            if {"SECRET_KEY", "TOKEN_ENCRYPTION_KEYS"} <= stored.keys():
                return {k: str(stored[k]) for k in ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS")}
        except (ValueError, OSError):
            pass
        time.sleep(0.02)
    raise ConfigError(f"{path} exists but is not a valid secrets file; fix or remove it")


def add_development_key(data_dir: Path) -> str:
    """Put a new encryption key in front of the development key ring; returns its id."""
    path = data_dir / "secrets.json"
    stored = _load_or_create_dev_secrets(data_dir)
    spec = new_encryption_key_spec()
    stored["TOKEN_ENCRYPTION_KEYS"] = f"{spec},{stored['TOKEN_ENCRYPTION_KEYS']}"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(stored, handle)
    os.replace(tmp, path)
    return spec.split(":", 1)[0]


def get_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(str(exc)) from exc
