"""One error model and one rule for "a person's browser": every AppError (sign-in and
session errors, Upwork errors, rate limits) is answered the same way for the same request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from upwork_assistant.api.deps import is_browser
from upwork_assistant.api.errors import error_response
from upwork_assistant.auth.errors import AuthError
from upwork_assistant.errors import AppError
from upwork_assistant.security.ratelimit import RateLimitExceeded
from upwork_assistant.upwork.errors import UpworkRateLimited, UpworkUnavailable

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
FORM = "application/x-www-form-urlencoded"


def request(path: str, method: str = "GET", accept: str = HTML, content_type: str = "") -> Request:
    headers = [(b"accept", accept.encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers,
        "query_string": b"",
        "app": None,
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("path", "method", "accept", "content_type", "browser"),
    [
        ("/", "GET", HTML, "", True),  # a page
        ("/security", "POST", HTML, FORM, True),  # one of our forms
        ("/api/auth/upwork/authorize", "GET", HTML, "", True),  # "Sign in with Upwork"
        ("/api/auth/upwork/callback", "GET", HTML, "", True),  # Upwork sends it back
        ("/api/auth/logout", "POST", HTML, FORM, True),  # the Sign out button
        ("/api/auth/mfa", "POST", HTML, FORM, True),  # the MFA step's form
        ("/api/auth/me", "GET", HTML, "", False),  # the API, even asked for HTML
        ("/api/upwork/profile/sync", "POST", HTML, "application/json", False),
        ("/api/auth/me", "GET", "application/json", "", False),
        ("/", "GET", "application/json", "", False),
        ("/sandbox/upwork/ab/account-security/oauth2/authorize", "GET", HTML, "", False),
        ("/healthz", "GET", HTML, "", False),
    ],
)
def test_one_rule_for_a_browser(
    path: str, method: str, accept: str, content_type: str, browser: bool
) -> None:
    assert is_browser(request(path, method, accept, content_type)) is browser


def test_every_error_derives_from_one_base() -> None:
    for error in (
        AuthError("not_authenticated"),
        UpworkUnavailable(),
        UpworkRateLimited(3),
        RateLimitExceeded(2),
    ):
        assert isinstance(error, AppError) and error.code and error.status >= 400
    assert RateLimitExceeded(2).headers == {"Retry-After": "2"}
    assert UpworkRateLimited(3).headers == {"Retry-After": "3"}


class Pages:
    def error_page(
        self,
        request: Request,
        status_code: int,
        headers: dict[str, str] | None = None,
        retry_after: int | None = None,
    ) -> Response:
        return HTMLResponse(f"page {status_code} {retry_after}", status_code, headers=headers)


@pytest.mark.parametrize(
    "error", [AuthError("not_authenticated"), UpworkUnavailable(), RateLimitExceeded(2)]
)
def test_the_same_request_gets_the_same_kind_of_answer(error: AppError) -> None:
    """An API call answers JSON whatever the error (before, an AuthError on /api/* with
    Accept: text/html redirected while an UpworkError on the same path answered JSON)."""
    api_call = error_response(request("/api/upwork/profile"), error, Pages())
    assert api_call.status_code == error.status
    body = json.loads(bytes(api_call.body))
    assert body == {"error": error.code, "message": error.message}

    page = error_response(request("/"), error, Pages())
    if error.browser_target == "signin":
        assert page.status_code == 303 and page.headers["location"] == f"/?error={error.code}"
    else:
        assert page.status_code == error.status and bytes(page.body).startswith(b"page")
    for name, value in (error.headers or {}).items():
        assert api_call.headers[name] == value
