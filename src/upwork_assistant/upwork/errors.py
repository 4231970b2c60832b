"""What can go wrong talking to Upwork, as typed errors with a stable code and an HTTP status.

Routes turn them into ``{"error": code, "message": ...}`` (502 for Upwork faults, 503 when
Upwork is unreachable or rate limited, 409 when the user must reconnect): never a 500. A
message never contains a token or an authorization code.
"""

from __future__ import annotations

from ..errors import AppError

#: Longest piece of Upwork's own error text we keep (logs, security-log details).
UPWORK_MESSAGE_MAX = 500


def upwork_text(value: object) -> str | None:
    """Upwork's own error message, trimmed and single-line, for logs and the security log.
    Upwork's messages name fields and reasons, never tokens; they are still cut short."""
    if not isinstance(value, str) or not value.strip():
        return None
    printable = "".join(c if c.isprintable() else " " for c in value[: UPWORK_MESSAGE_MAX * 2])
    return " ".join(printable.split())[:UPWORK_MESSAGE_MAX] or None


class UpworkError(AppError):
    """Talking to Upwork failed; ``upwork_message`` is what Upwork itself said, when it
    said anything (GraphQL errors, OAuth errors)."""

    def __init__(
        self, code: str, message: str, status: int = 502, upwork_message: str | None = None
    ) -> None:
        super().__init__(code, message, status, upwork_message=upwork_message)


class UpworkUnavailable(UpworkError):
    """Upwork did not answer in time, or could not be reached."""

    def __init__(self, message: str = "Upwork did not answer in time. Please try again.") -> None:
        super().__init__("upwork_unavailable", message, 503)


class UpworkUnauthorized(UpworkError):
    """Upwork refused the access token: a 401, or an authentication error inside a 200."""

    def __init__(self, upwork_message: str | None = None) -> None:
        super().__init__(
            "upwork_unauthorized", "Upwork refused our access token.", 502, upwork_message
        )


class UpworkRateLimited(UpworkError):
    """Upwork answered 429, or our own budget for calls to Upwork is spent."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "upwork_rate_limited",
            "Upwork is limiting requests right now. Please try again shortly.",
            503,
        )
        self.retry_after = max(1, int(retry_after + 0.999))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpworkAPIError(UpworkError):
    """Upwork's API answered with an error (5xx, an unexpected 4xx, or GraphQL errors)."""

    def __init__(
        self,
        message: str = "Upwork's API answered with an error.",
        upwork_message: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__("upwork_api_error", message, 502, upwork_message)
        #: The HTTP status Upwork answered with (200 for errors inside a GraphQL answer).
        self.http_status = http_status


class UpworkScopeError(UpworkAPIError):
    """The API key's scopes do not cover some fields of the query: Upwork failed the whole
    query (HTTP 200, ``data: null``) and named the refused fields as ``Type.field``."""

    def __init__(self, refused: list[str], upwork_message: str | None) -> None:
        super().__init__(
            "This installation's Upwork API key does not grant access to: "
            + ", ".join(refused)
            + ". The operator can add the missing permissions to the key on Upwork.",
            upwork_message,
            200,
        )
        self.code = "upwork_scope_missing"
        self.refused = refused
        #: Data that came with the error, if Upwork answered the granted part anyway.
        self.data: dict[str, object] | None = None


class UpworkNullFields(UpworkAPIError):
    """Upwork answered null for fields its schema declares non-null, so (as the GraphQL
    specification requires) the null spread to the nearest nullable parent and an error
    names each field. A live client reports this of ``FreelancerProfile.fullName``,
    ``firstName`` and ``lastName`` (borntojesus/upwork-crm
    ``src/research/fetch-top-freelancers.ts``): the whole ``freelancerProfile`` then comes
    back null, which must not be read as "no freelancer profile"."""

    def __init__(self, fields: list[str], upwork_message: str | None) -> None:
        super().__init__("Upwork sent no value for " + ", ".join(fields) + ".", upwork_message, 200)
        self.code = "upwork_null_fields"
        self.fields = fields
        self.data: dict[str, object] | None = None


class UpworkInvalidGrant(UpworkError):
    """Upwork refused a code or refresh token (``invalid_grant``)."""

    def __init__(self, upwork_message: str | None = None) -> None:
        super().__init__("invalid_grant", "Upwork refused the grant.", 400, upwork_message)


class UpworkReauthRequired(UpworkError):
    """The user's Upwork connection is gone (refresh token expired or revoked)."""

    def __init__(self) -> None:
        super().__init__(
            "upwork_reauth_required",
            "Your Upwork connection has expired. Reconnect Upwork (sign in with Upwork "
            "again) to restore it; your account and data stay as they are.",
            409,
        )
