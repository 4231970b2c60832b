"""The sandbox's registered clients, users, issued codes and tokens, and fault switches.

Everything is kept in memory: the sandbox is a stand-in for Upwork, not a product store.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ACCESS_TOKEN_TTL = 86_400  # Upwork: access tokens live 24 hours
REFRESH_TOKEN_TTL = 14 * 86_400  # Upwork: refresh tokens live two weeks
CODE_TTL = 600  # authorization codes: 10 minutes, single use
CONSENT_TTL = 1800


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

    def graphql_user(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "nid": self.nid,
            "rid": self.rid,
            "name": self.name,
            "email": self.email,
            "photoUrl": None,
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
        ),
        SandboxUser(
            id="1717171717171717003",
            nid="noemailuser",
            rid="7000003",
            name="Sam Private",
            email=None,
            organization_id="1717171717171717103",
            organization_name="Sam Private",
            note="no email address",
        ),
        SandboxUser(
            id="1717171717171717004",
            nid="htmlname",
            rid="7000004",
            name=_long_html_name(),
            email="html.name@example.com",
            organization_id="1717171717171717104",
            organization_name="<b>Markup Ltd</b>",
            note="a 300-character name with HTML in it",
        ),
    ]


@dataclass(frozen=True)
class SandboxClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Faults:
    """Switches that make the sandbox misbehave, for tests and demos."""

    token_status: int | None = None  # answer the token endpoint with this HTTP status
    token_delay: float = 0.0  # seconds to wait before answering the token endpoint
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

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        for key, value in values.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SandboxConfig:
    clients: list[SandboxClient]
    users: list[SandboxUser] = field(default_factory=default_users)
    faults: Faults = field(default_factory=Faults)


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
            body["expires_in"] = faults.access_token_ttl
        return body

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
