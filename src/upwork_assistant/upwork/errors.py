"""What can go wrong talking to Upwork, as codes the sign-in flow turns into messages."""

from __future__ import annotations


class UpworkError(Exception):
    """Upwork could not give us what we asked for.

    ``code`` is a stable machine-readable reason, ``status`` the HTTP status we answer with.
    The message never contains a token or an authorization code.
    """

    def __init__(self, code: str, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class UpworkUnavailable(UpworkError):
    def __init__(self, message: str = "Upwork did not answer in time. Please try again.") -> None:
        super().__init__("upwork_unavailable", message, 503)


class UpworkUnauthorized(UpworkError):
    """Upwork refused the access token (401)."""

    def __init__(self) -> None:
        super().__init__("upwork_unauthorized", "Upwork refused our access token.", 502)
