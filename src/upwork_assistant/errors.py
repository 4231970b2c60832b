"""The one base of every error the product answers with.

An :class:`AppError` has a stable ``code`` (the key of its message in the catalogue: the
sign-in reasons of auth/errors.py, translated on the pages by web/i18n.py), an HTTP
``status``, a ``message`` for API clients, optional ``headers`` (Retry-After), and where a
person's browser is sent: back to the sign-in page with ``?error=<code>`` (the page says
why in the person's language) or to the styled error page. api/errors.py answers every
AppError by that one rule; the domain raises them without knowing about HTTP.
"""

from __future__ import annotations

from typing import ClassVar, Literal

BrowserTarget = Literal["signin", "page"]


class AppError(Exception):
    #: Where a browser goes: the sign-in page with the reason, or the error page.
    browser_target: ClassVar[BrowserTarget] = "page"

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        upwork_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self._message = message
        self._status = status
        self._headers = headers
        #: What Upwork itself said, when it said anything: for logs, never shown as ours.
        self.upwork_message = upwork_message

    @property
    def message(self) -> str:
        return self._message

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> dict[str, str] | None:
        return self._headers
