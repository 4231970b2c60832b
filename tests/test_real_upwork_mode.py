"""With UPWORK_CLIENT_ID/SECRET set the app talks to whatever the UPWORK_*_URL settings name:
here a standalone sandbox on another port, exactly as it would talk to Upwork."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from .conftest import SANDBOX_USERS, AppFactory, StandaloneSandbox
from .helpers import bound_socket


def test_sign_in_against_external_upwork(
    app_factory: AppFactory, sandbox_factory: Callable[[list[str]], StandaloneSandbox]
) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    sb = sandbox_factory([f"http://127.0.0.1:{port}/api/auth/upwork/callback"])
    app = app_factory(
        sock=sock,
        upwork_client_id=sb.client_id,
        upwork_client_secret=sb.client_secret,
        upwork_authorize_url=f"{sb.url}/ab/account-security/oauth2/authorize",
        upwork_token_url=f"{sb.url}/api/v3/oauth2/token",
        upwork_graphql_url=f"{sb.url}/graphql",
    )
    browser = app.browser()
    page = browser.get("/")
    assert "Sandbox mode" not in page.text
    assert httpx.get(f"{app.url}/sandbox/upwork/graphql").status_code == 404

    consent = browser.start_sign_in()
    assert str(consent.url).startswith(sb.url)
    callback = browser.decide(consent, SANDBOX_USERS["html"])
    assert callback.startswith(f"{app.url}/api/auth/upwork/callback?")
    assert browser.get(callback).headers["location"] == "/"
    me = browser.get("/api/auth/me", headers={"Accept": "application/json"}).json()
    assert me["upwork_id"] == SANDBOX_USERS["html"]
    stats = sb.state.stats
    assert stats["token_authorization_code"] == 1 and stats["graphql_requests"] == 1
