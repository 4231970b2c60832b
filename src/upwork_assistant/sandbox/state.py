"""The sandbox's registered clients, users, issued codes and tokens, and fault switches.

Everything is kept in memory: the sandbox is a stand-in for Upwork, not a product store.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from functools import cache
from types import NoneType, UnionType
from typing import Any, get_args, get_origin, get_type_hints

from . import profiles
from .profiles import ProfileSpec
from .scopes import DEFAULT_SCOPES, check_scopes

ACCESS_TOKEN_TTL = 86_400  # Upwork: access tokens live 24 hours
REFRESH_TOKEN_TTL = 14 * 86_400  # Upwork: refresh tokens live two weeks
CODE_TTL = 600  # authorization codes: 10 minutes, single use
CONSENT_TTL = 1800
# Upwork's maintainer (upwork/python-upwork-oauth2 issue #11): after a refresh "we change
# expiration date for old refresh token to now + 24 hours".
OLD_REFRESH_GRACE = 86_400
PKCE_MODES = ("enforce", "ignore", "reject")


@dataclass(frozen=True)
class SandboxUser:
    id: str
    nid: str
    rid: str
    name: str
    email: str | None
    organization_id: str
    organization_name: str
    note: str = ""
    # What GraphQL's `name` says; None: first name + initial of the last, as Upwork sends it.
    short_name: str | None = None
    # The freelancer profile; None: an account without one (a client's).
    profile: ProfileSpec | None = None

    @property
    def graphql_name(self) -> str:
        if self.short_name is not None:
            return self.short_name
        first, _, last = self.name.strip().partition(" ")
        last = last.strip()
        return f"{first} {last[0]}." if last else first

    @property
    def ciphertext(self) -> str:
        """The profile key, Upwork-style (``~01`` + 16 hex), stable per user id."""
        return "~01" + hashlib.sha256(f"profile:{self.id}".encode()).hexdigest()[:16]

    @property
    def initials(self) -> str:
        letters = [w[0] for w in self.name.split() if w[0].isalpha()]
        return "".join(letters[:2]).upper() or "?"

    def photo_url(self, base_url: str) -> str:
        return f"{base_url}/_sandbox/portraits/{self.id}.svg"

    def graphql_generic_user(self, base_url: str) -> dict[str, Any]:
        """The user as ``GenericUser`` (what anyone may see): ``base_url`` is where the
        sandbox is served, for the portrait's absolute URL."""
        return {
            "id": self.id,
            "nid": self.nid,
            "rid": self.rid,
            "name": self.graphql_name,
            "photoUrl": self.photo_url(base_url),
            "ciphertext": self.ciphertext,
        }

    def graphql_user(self, base_url: str, now: datetime | None = None) -> dict[str, Any]:
        """The user as ``CurrentUser``; the profile is built only when a query selects it
        (graphql-core calls a callable value with the resolve info). ``now``: the moment
        the profile's relative dates count from (default: when it is built)."""
        return {
            **self.graphql_generic_user(base_url),
            "email": self.email,
            "freelancerProfile": lambda _info: profiles.graphql_profile(self, base_url, now),
        }

    def graphql_organization(self) -> dict[str, Any]:
        return {
            "id": self.organization_id,
            "rid": self.organization_id[-7:],
            "name": self.organization_name,
            "type": "Vendor",
            "legacyType": "FREELANCER",
        }


def _long_html_name() -> str:
    head = '<script>alert("name")</script><b>Bold</b> &amp; <i>Freelancer</i> '
    return (head + "Lorem ipsum dolor sit amet " * 12)[:300]


def default_users() -> list[SandboxUser]:
    return [
        SandboxUser(
            id="1717171717171717001",
            nid="alexmorgan",
            rid="7000001",
            name="Alex Morgan",
            email="alex.morgan@example.com",
            organization_id="1717171717171717101",
            organization_name="Alex Morgan",
            note="an ordinary freelancer",
            profile=profiles.ALEX,
        ),
        SandboxUser(
            id="1717171717171717002",
            nid="olenakovalenko",
            rid="7000002",
            name="Олена Коваленко",
            email="olena.kovalenko@example.com",
            organization_id="1717171717171717102",
            organization_name="Студія Олени",
            note="a Cyrillic name",
            profile=profiles.OLENA,
        ),
        SandboxUser(
            id="1717171717171717003",
            nid="noemailuser",
            rid="7000003",
            name="Sam Private",
            email=None,
            organization_id="1717171717171717103",
            organization_name="Sam Private",
            note="no email address; hides earnings and Job Success Score",
            profile=profiles.SAM,
        ),
        SandboxUser(
            id="1717171717171717004",
            nid="htmlname",
            rid="7000004",
            name=_long_html_name(),
            email="html.name@example.com",
            organization_id="1717171717171717104",
            organization_name="<b>Markup Ltd</b>",
            note="a 300-character name with HTML in it, sent whole (not abbreviated)",
            # Sent as it is, to test that the product copes with a long name full of markup.
            short_name=_long_html_name(),
            profile=profiles.HTML,
        ),
        SandboxUser(
            id="1717171717171717005",
            nid="chrishale",
            rid="7000005",
            name="Chris Hale",
            email="chris.hale@example.com",
            organization_id="1717171717171717105",
            organization_name="Hale Ventures",
            note="a client account: no freelancer profile",
        ),
    ]


@dataclass(frozen=True)
class SandboxClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...] = DEFAULT_SCOPES  # the API key's scopes ("all" allowed)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", check_scopes(self.scopes))


@dataclass
class Faults:
    """Switches that make the sandbox misbehave, for tests and demos.

    The defaults are as strict as the evidence about real Upwork (docs/sandbox.md names the
    sources); each kinder behaviour the sandbox used to have is a switch here.
    """

    token_status: int | None = None  # answer the token endpoint with this HTTP status
    token_delay: float = 0.0  # seconds to wait before answering the token endpoint
    refresh_delay: float = 0.0  # seconds a refresh_token grant waits (others do not)
    token_non_json: bool = False  # answer the token endpoint with an HTML page
    graphql_status: int | None = None  # e.g. 500, 401 or 429
    graphql_delay: float = 0.0
    graphql_errors: bool = False  # 200 with a GraphQL "errors" list and no data
    retry_after: int = 30  # Retry-After seconds sent with a 429
    user_patch: dict[str, Any] | None = None  # fields laid over `user` in GraphQL answers
    access_token_ttl: int = ACCESS_TOKEN_TTL
    refresh_token_ttl: int = REFRESH_TOKEN_TTL
    omit_expires_in: bool = False  # token answers without expires_in
    rotate_refresh_token: bool = True  # a refresh returns a new refresh token
    scopes: list[str] | None = None  # overrides every client's scopes ("all" allowed)
    refresh_basic_auth: bool = False  # accept client credentials in HTTP Basic on refresh
    old_refresh_grace: int = OLD_REFRESH_GRACE  # seconds a rotated-away refresh token lives
    expires_in_as_string: bool = False  # "expires_in": "86400", as Upwork sometimes sends
    ip_rate_limit: float = 10  # requests per second per client IP; 0: no limit
    ip_block_seconds: float = 60  # blocked this long after an IP's last refused request
    auth_error_status: int = 401  # 200: a bad bearer token gets a GraphQL error in a 200
    pkce: str = "enforce"  # "enforce", "ignore" or "reject"
    deny_redirect: bool = True  # False: Deny shows a sandbox page instead of redirecting
    # FreelancerProfile fields (non-null in the schema) answered null, as a live client
    # reports of fullName/firstName/lastName: the null spreads to `freelancerProfile`.
    profile_nulls: list[str] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f.name, getattr(self, f.name)))

    def update(self, values: dict[str, Any]) -> None:
        """Validate every value first, so a bad request changes nothing (ValueError)."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        checked = {key: _checked(key, value) for key, value in values.items()}
        for key, value in checked.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status(value: Any) -> Any:
    if value is not None and not 100 <= value <= 599:
        raise ValueError("must be an HTTP status (100-599)")
    return value


def _non_negative(value: Any) -> Any:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _one_of(*allowed: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return check


def _scope_list(value: Any) -> Any:
    return None if value is None else list(check_scopes(value))


#: Value rules beyond the field's type.
def _profile_fields(value: list[str] | None) -> list[str] | None:
    known = {"fullName", "firstName", "lastName", "personalData", "userPreferences"}
    unknown = set(value or ()) - known
    if unknown:
        raise ValueError(
            f"unknown FreelancerProfile fields {sorted(unknown)}; known: {sorted(known)}"
        )
    return value


_RULES: dict[str, Callable[[Any], Any]] = {
    "token_status": _status,
    "graphql_status": _status,
    "token_delay": _non_negative,
    "refresh_delay": _non_negative,
    "graphql_delay": _non_negative,
    "retry_after": _non_negative,
    "access_token_ttl": _non_negative,
    "refresh_token_ttl": _non_negative,
    "old_refresh_grace": _non_negative,
    "ip_rate_limit": _non_negative,
    "ip_block_seconds": _non_negative,
    "auth_error_status": _one_of(200, 401),
    "pkce": _one_of(*PKCE_MODES),
    "scopes": _scope_list,
    "profile_nulls": _profile_fields,
}


def _of_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a field type (bool is not an int here, int is a float)."""
    if isinstance(hint, UnionType):
        return any(_of_type(value, arm) for arm in get_args(hint))
    origin = get_origin(hint) or hint
    if origin is NoneType:
        return value is None
    if origin in (int, float) and isinstance(value, bool):
        return False
    if origin is float:
        return isinstance(value, int | float) and math.isfinite(value)
    if origin is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, origin)


@cache
def _fault_types() -> dict[str, Any]:
    return get_type_hints(Faults)


def _checked(name: str, value: Any) -> Any:
    hint = _fault_types()[name]
    if not _of_type(value, hint):
        type_name = hint.__name__ if isinstance(hint, type) else str(hint)
        raise ValueError(f"{name}: {value!r} is not of type {type_name}")
    if hint is float:
        value = float(value)
    try:
        return _RULES.get(name, lambda v: v)(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass
class SandboxConfig:
    clients: list[SandboxClient]
    users: list[SandboxUser] = field(default_factory=default_users)
    faults: Faults = field(default_factory=Faults)
    #: Who may use the fault switches and counters (``/_sandbox/faults``, ``/stats``):
    #: everybody (development, tests), only a bearer of ``controls_token``, or nobody
    #: (404) when neither is set. A production demo must never leave them open.
    controls_open: bool = True
    controls_token: str | None = None


@dataclass
class PendingConsent:
    client_id: str
    redirect_uri: str
    state: str | None
    scope: str | None
    code_challenge: str | None
    expires_at: float


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    user_id: str
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    """An access or refresh token and what it stands for."""

    client_id: str
    user_id: str
    expires_at: float | None
    family: str  # all tokens descended from one authorization code
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clients = {c.client_id: c for c in config.clients}
        self.users = {u.id: u for u in config.users}
        self.consents: dict[str, PendingConsent] = {}
        self.codes: dict[str, IssuedCode] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.stats: Counter[str] = Counter()
        self.ip_limiter = IpRateLimiter()

    @property
    def faults(self) -> Faults:
        return self.config.faults

    def new_consent(self, consent: PendingConsent) -> str:
        self._prune()
        consent_id = secrets.token_urlsafe(24)
        self.consents[consent_id] = consent
        return consent_id

    def issue_code(self, consent: PendingConsent, user_id: str) -> str:
        code = secrets.token_urlsafe(32)
        self.codes[code] = IssuedCode(
            client_id=consent.client_id,
            redirect_uri=consent.redirect_uri,
            user_id=user_id,
            code_challenge=consent.code_challenge,
            expires_at=time.time() + CODE_TTL,
        )
        return code

    def issue_tokens(
        self, client_id: str, user_id: str, family: str, refresh_token: str | None = None
    ) -> dict[str, Any]:
        now = time.time()
        faults = self.faults
        access = "oauth2v2_" + secrets.token_urlsafe(32)
        self.access_tokens[access] = Grant(
            client_id, user_id, now + faults.access_token_ttl, family
        )
        if refresh_token is None:
            refresh_token = "oauth2v2_" + secrets.token_urlsafe(32)
            self.refresh_tokens[refresh_token] = Grant(
                client_id, user_id, now + faults.refresh_token_ttl, family
            )
        body: dict[str, Any] = {
            "access_token": access,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
        }
        if not faults.omit_expires_in:
            ttl = faults.access_token_ttl
            body["expires_in"] = str(ttl) if faults.expires_in_as_string else ttl
        return body

    def retire_refresh_token(self, grant: Grant) -> None:
        """A rotated-away refresh token keeps working for the grace period (Upwork: "we
        change expiration date for old refresh token to now + 24 hours")."""
        grace = self.faults.old_refresh_grace
        if grace <= 0:
            grant.revoked = True
            return
        deadline = time.time() + grace
        grant.expires_at = deadline if grant.expires_at is None else min(grant.expires_at, deadline)

    def client_scopes(self, client_id: str) -> tuple[str, ...]:
        override = self.faults.scopes
        return tuple(override) if override is not None else self.clients[client_id].scopes

    def revoke_family(self, family: str) -> None:
        for table in (self.access_tokens, self.refresh_tokens):
            for grant in table.values():
                if grant.family == family:
                    grant.revoked = True

    def _prune(self) -> None:
        """Forget what can no longer be used (kept a while to answer replays properly)."""
        now = time.time()
        for table in (self.consents, self.codes):
            for key in [k for k, v in table.items() if v.expires_at < now - CODE_TTL]:
                del table[key]
        for grants in (self.access_tokens, self.refresh_tokens):
            for key in [
                k
                for k, g in grants.items()
                if g.expires_at is not None and g.expires_at < now - CODE_TTL
            ]:
                del grants[key]


class IpRateLimiter:
    """Upwork's per-IP limit (support article "What are the API requests limits": 10
    requests per second per IP, HTTP 429 over it; older versions of the article: blocked
    until a minute has passed since the last rate-limited request).

    A sliding one-second window per IP; an IP over the limit is blocked, and every request
    it sends while blocked pushes the end of the block further.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.recent: dict[str, deque[float]] = {}
        self.blocked_until: dict[str, float] = {}
        self._clock = clock

    def allow(self, ip: str, limit: float, block_seconds: float) -> bool:
        if limit <= 0:
            return True
        now = self._clock()
        if self.blocked_until.get(ip, 0.0) > now:
            self.blocked_until[ip] = now + block_seconds
            return False
        window = self.recent.setdefault(ip, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            self.blocked_until[ip] = now + block_seconds
            return False
        window.append(now)
        return True
