"""What can go wrong talking to Upwork, as typed errors with a stable code and an HTTP status.

Routes turn them into ``{"error": code, "message": ...}`` (502 for Upwork faults, 503 when
Upwork is unreachable or rate limited, 409 when the user must reconnect): never a 500. A
message never contains a token or an authorization code.
"""

from __future__ import annotations


class UpworkError(Exception):
    def __init__(self, code: str, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @property
    def headers(self) -> dict[str, str] | None:
        return None


class UpworkUnavailable(UpworkError):
    """Upwork did not answer in time, or could not be reached."""

    def __init__(self, message: str = "Upwork did not answer in time. Please try again.") -> None:
        super().__init__("upwork_unavailable", message, 503)


class UpworkUnauthorized(UpworkError):
    """Upwork refused the access token (401)."""

    def __init__(self) -> None:
        super().__init__("upwork_unauthorized", "Upwork refused our access token.", 502)


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

    def __init__(self, message: str = "Upwork's API answered with an error.") -> None:
        super().__init__("upwork_api_error", message, 502)


class UpworkInvalidGrant(UpworkError):
    """Upwork refused a code or refresh token (``invalid_grant``)."""

    def __init__(self) -> None:
        super().__init__("invalid_grant", "Upwork refused the grant.", 400)


class UpworkReauthRequired(UpworkError):
    """The user's Upwork connection is gone (refresh token expired or revoked)."""

    def __init__(self) -> None:
        super().__init__(
            "upwork_reauth_required",
            "Your Upwork connection has expired. Reconnect Upwork (sign in with Upwork "
            "again) to restore it; your account and data stay as they are.",
            409,
        )
