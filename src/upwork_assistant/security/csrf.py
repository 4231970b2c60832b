"""CSRF tokens bound to the session: HMAC(session id), checked on every unsafe request
that authenticates with cookies. A stolen cookie-less page cannot forge it."""

from __future__ import annotations

from .keys import constant_time_equal, mac

CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CsrfGuard:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token_for(self, session_id: str) -> str:
        return mac(self._key, f"csrf:{session_id}")

    def valid(self, session_id: str, presented: str | None) -> bool:
        return bool(presented) and constant_time_equal(self.token_for(session_id), presented or "")
