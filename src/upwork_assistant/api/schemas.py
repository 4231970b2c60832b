"""The API's contract in the OpenAPI document: the response models of /api/* (grouped by
area), the one error body and its ``responses=`` helper, and the security schemes.

The models describe what the handlers return today, key for key. Timestamps the handlers
write with ``isoformat()`` (``2026-11-27T10:00:00+00:00``) stay ``str`` fields with
``format: date-time``, so that validating an answer never rewrites them (a ``datetime``
field would write ``Z``). The Upwork profile's own models live in ``routes/upwork.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.security import APIKeyCookie, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ..db.models import Role

# --- errors ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error the API answers: a stable reason code and a message a person reads."""

    error: str = Field(description="A stable reason code, e.g. ``not_authenticated``")
    message: str = Field(description="What went wrong, in words for a person")


#: What each status means wherever it is documented.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request cannot be completed (e.g. a wrong or malformed code): see ``error``",
    401: "Not signed in, or the session has ended (``not_authenticated``, ``session_expired``)",
    403: "Refused: a missing or wrong CSRF token (``csrf_failed``), no access "
    "(``forbidden``) or a blocked account",
    404: "Not found",
    409: "Conflicts with the current state: see ``error``",
    422: "Invalid input (``invalid_request``); ``message`` names the field",
    429: "Rate limited (``rate_limited``) or locked out; see the ``Retry-After`` header",
    502: "Upwork answered with an error",
    503: "Upwork or a backend of ours is unavailable (``service_unavailable``); "
    "see ``Retry-After``",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for the error statuses it can answer, each with
    :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def redirect(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """A redirect answer (for a browser): a ``Location`` header and no body."""
    return {
        status: {
            "description": description,
            "headers": {
                "Location": {"description": "Where to go next", "schema": {"type": "string"}}
            },
        }
    }


# --- security schemes -----------------------------------------------------------------

#: The access token's cookie. Documented by its plain-http name: over https the app
#: names it from ``Settings.cookies.access`` (``__Host-access_token``). Reading it here
#: only documents the scheme; api/deps.py authenticates.
cookie_auth = APIKeyCookie(
    name="access_token",
    scheme_name="cookieAuth",
    description="The session's access token (a JWT) in the ``access_token`` cookie, set "
    "at sign-in; over https its name is ``__Host-access_token`` (Settings.cookies.access). "
    "Unsafe requests (POST, DELETE) authenticated by the cookie also need the session's "
    "CSRF token in the ``X-CSRF-Token`` header.",
    auto_error=False,
)
#: The same access token as ``Authorization: Bearer <JWT>`` (from the sign-in answer).
bearer_auth = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="The access token (``access_token`` of the sign-in or refresh answer) as "
    "``Authorization: Bearer <JWT>``; needs no CSRF token.",
    auto_error=False,
)

#: The security requirement of every signed-in route (either scheme), put on each of
#: their operations by `api.deps.SignedInRouter` and not by dependencies: a dependency
#: per scheme would be resolved on every request only to document it.
SIGNED_IN_OPENAPI: dict[str, Any] = {
    "security": [{scheme.scheme_name: []} for scheme in (cookie_auth, bearer_auth)]
}


def security_schemes() -> dict[str, Any]:
    """``components.securitySchemes`` for `SIGNED_IN_OPENAPI`."""
    return {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for scheme in (cookie_auth, bearer_auth)
    }


# --- auth: /api/auth/* and the JWKS ---------------------------------------------------

IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class UserOut(BaseModel):
    """The signed-in user (``/api/auth/me`` and every sign-in answer)."""

    id: str
    upwork_id: str
    name: str
    email: str | None
    mfa_enabled: bool
    roles: list[Role]
    profile_synced_at: IsoTime | None


class AuthorizeOut(BaseModel):
    authorization_url: str = Field(description="Upwork's authorization page to send the user to")


class SignedInOut(BaseModel):
    """A completed sign-in for an API client: the user and a Bearer access token (the
    session's cookies are set too)."""

    user: UserOut
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds the access token is valid")


class SignInCompletedOut(SignedInOut):
    created: bool = Field(description="True when this sign-in created the account")


class MfaRequiredOut(BaseModel):
    """The sign-in waits for its second factor: post the code to ``/api/auth/mfa`` (the
    challenge cookie is set)."""

    mfa_required: Literal[True]
    created: bool


class MfaCodeBody(BaseModel):
    """A TOTP code or a backup code: JSON, or an HTML form with the same field."""

    code: str = Field(max_length=64, description="A 6-digit TOTP code or a backup code")


class SignedOutOut(BaseModel):
    signed_out: bool = Field(description="True when a session was revoked")


class Jwk(BaseModel):
    """A public signing key (Ed25519, OKP)."""

    model_config = ConfigDict(extra="allow")

    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class JwksOut(BaseModel):
    keys: list[Jwk]


# --- security: sessions and two-factor sign-in ----------------------------------------


class SessionOut(BaseModel):
    id: str
    created_at: IsoTime
    last_seen_at: IsoTime
    expires_at: IsoTime
    ip: str | None
    user_agent: str | None
    device: str
    is_current: bool


class RevokedOut(BaseModel):
    revoked: int = Field(description="How many sessions were revoked")


class MfaStatusOut(BaseModel):
    enabled: bool = Field(description="True while you have a second factor")
    enabled_at: IsoTime | None
    backup_codes_left: int
    totp_enabled: bool = Field(description="An authenticator app is set up")
    passkeys: int = Field(description="How many passkeys are registered")
    fresh_until: IsoTime | None = Field(
        description="Until when this session may add or remove factors without confirming "
        "again (null: confirm first, when MFA is on)"
    )


# --- passkeys (WebAuthn) ---------------------------------------------------------------


class PasskeyOut(BaseModel):
    id: str
    name: str
    created_at: IsoTime
    last_used_at: IsoTime | None
    backed_up: bool = Field(description="The authenticator says it syncs this passkey")


class WebAuthnOptionsOut(BaseModel):
    """Options for ``navigator.credentials.create`` or ``.get``, in the WebAuthn JSON form
    (``PublicKeyCredential.parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON``
    read it). The challenge in it is single-use and dies after five minutes."""

    publicKey: dict[str, Any]


class WebAuthnCredentialBody(BaseModel):
    """The browser's answer, as ``PublicKeyCredential.toJSON()`` gives it."""

    credential: dict[str, Any] = Field(
        description="RegistrationResponseJSON or AuthenticationResponseJSON"
    )


class PasskeyAddBody(WebAuthnCredentialBody):
    name: str = Field(
        min_length=1,
        max_length=200,
        description="What you call it (1 to 64 characters once trimmed)",
    )
    revoke_other_sessions: bool = False


class PasskeyRenameBody(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="1 to 64 characters once trimmed")


class PasskeyAddedOut(BaseModel):
    passkey: PasskeyOut
    mfa_enabled: Literal[True]
    backup_codes: list[str] = Field(
        description="Shown once, when this passkey turned MFA on; empty otherwise"
    )
    revoked_sessions: int


class PasskeyRemovedOut(BaseModel):
    mfa_enabled: bool = Field(description="False when this was your last second factor")
    revoked_sessions: int


class FreshOut(BaseModel):
    fresh_until: IsoTime = Field(description="Until when factor changes need no confirmation")


class MfaSetupOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class MfaEnabledOut(BaseModel):
    mfa_enabled: Literal[True]
    backup_codes: list[str] = Field(description="Shown once")
    revoked_sessions: int


class MfaDisabledOut(BaseModel):
    mfa_enabled: Literal[False]
    revoked_sessions: int


class BackupCodesOut(BaseModel):
    backup_codes: list[str] = Field(description="Shown once; the old ones stop working")
    revoked_sessions: int


# --- account --------------------------------------------------------------------------


class AccountDeletedOut(BaseModel):
    deleted: Literal[True]


# --- security log and administration --------------------------------------------------


class EventOut(BaseModel):
    id: int
    time: IsoTime
    type: str
    session_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any] | None


class AdminEventOut(EventOut):
    user_id: str | None


class EventsOut(BaseModel):
    items: list[EventOut]
    next_before: int | None = Field(description="Pass as ``before`` for the next page")


class AdminEventsOut(BaseModel):
    items: list[AdminEventOut]
    next_before: int | None = Field(description="Pass as ``before`` for the next page")


class StatsOut(BaseModel):
    users: int
    blocked_users: int
    active_sessions: int
    mfa_users: int
    signins_24h: int
    failed_signins_24h: int
    mfa_lockouts_24h: int
    passkey_users: int
    passkey_counter_regressions_24h: int = Field(
        description="Passkey sign-ins refused because the counter went back (a copied key?)"
    )
    users_needing_upwork_reauth: int


class AdminUserOut(BaseModel):
    id: str
    upwork_id: str
    name: str
    email: str | None
    roles: list[Role]
    mfa_enabled: bool
    mfa_factors: list[Literal["totp", "passkey"]] = Field(
        description="Which second factors are on (backup codes come with either)"
    )
    passkeys: int = Field(description="How many passkeys are registered")
    blocked: bool
    blocked_at: IsoTime | None
    blocked_reason: str | None
    created_at: IsoTime
    upwork_connection: str | None


class UsersOut(BaseModel):
    items: list[AdminUserOut]
    total: int


# --- upwork: the connection (the profile's models are in routes/upwork.py) -------------


class ContentTimesOut(BaseModel):
    """Where the user's Upwork content stands in its 24-hour life."""

    state: Literal["fresh", "refreshing"]
    fetched_at: IsoTime | None
    expires_at: IsoTime | None
    email_fetched_at: IsoTime | None


class GrantsOut(BaseModel):
    """What the installation's API key did not grant at the last fetch."""

    missing_fields: list[str]
    missing_features: list[str]
    checked_at: IsoTime | None
    message: str | None


class ConnectionOut(BaseModel):
    status: Literal["connected", "needs_reauth"]
    access_expires_at: IsoTime | None
    refresh_expires_at: IsoTime | None
    last_refresh_at: IsoTime | None
    organization_id: str | None
    grants: GrantsOut
    content: ContentTimesOut
