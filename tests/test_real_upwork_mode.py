"""With UPWORK_CLIENT_ID/SECRET set the app talks to whatever the UPWORK_*_URL settings name:
here a standalone sandbox on another port, exactly as it would talk to Upwork."""

from __future__ import annotations

import httpx

from .fixtures import SANDBOX_USERS, External


def test_sign_in_against_external_upwork(external: External) -> None:
    app, sb = external.app, external.sandbox
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
    # The key has Common Entities only (the sandbox's default, as a fresh key): one query
    # refused for its email and organization, then the same query without them.
    assert stats["token_authorization_code"] == 1 and stats["graphql_requests"] == 2
