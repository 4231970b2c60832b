"""Upwork's own Python SDK (python-upwork-oauth2) against the sandbox: authorization URL,
code exchange, GraphQL calls and a refresh, with only its hosts pointed at the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import upwork
import upwork.upwork
from upwork.routers import graphql

from .fixtures import SANDBOX_USERS, StandaloneSandbox
from .helpers import parse_consent

REDIRECT = "http://127.0.0.1:9/sdk-callback"


@pytest.fixture
def sdk_sandbox(
    sandbox_factory: Callable[[list[str]], StandaloneSandbox], monkeypatch: pytest.MonkeyPatch
) -> Iterator[StandaloneSandbox]:
    sb = sandbox_factory([REDIRECT])
    sb.faults(scopes=["all"])  # the queries below read the email and the organization
    monkeypatch.setattr(upwork.upwork, "BASE_HOST", sb.url)
    monkeypatch.setattr(upwork.upwork, "GQL_EPOINT", f"{sb.url}/graphql")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    yield sb


def test_official_sdk_full_flow(sdk_sandbox: StandaloneSandbox) -> None:
    config = upwork.Config(
        {
            "client_id": sdk_sandbox.client_id,
            "client_secret": sdk_sandbox.client_secret,
            "redirect_uri": REDIRECT,
        }
    )
    client = upwork.Client(config)

    authorization_url, state = client.get_authorization_url()
    assert authorization_url.startswith(f"{sdk_sandbox.url}/ab/account-security/oauth2/authorize")

    with httpx.Client() as browser:
        page = browser.get(authorization_url)
        assert page.status_code == 200
        consent = parse_consent(page.text)
        r = browser.post(
            httpx.URL(authorization_url).join(consent.action),
            data={
                "consent_id": consent.consent_id,
                "user_id": SANDBOX_USERS["olena"],
                "decision": "allow",
            },
        )
    authorization_response = r.headers["location"]
    assert f"state={state}" in authorization_response

    token = client.get_access_token(authorization_response)
    assert token["token_type"] == "Bearer" and token["access_token"]
    assert token["expires_in"] == 86400 and token["refresh_token"]

    result = graphql.Api(client).execute(
        {"query": "query { user { id name email } organization { id name } }"}
    )
    assert result["data"]["user"]["id"] == SANDBOX_USERS["olena"]
    assert result["data"]["user"]["name"] == "Олена " + "Коваленко"[0] + "."
    assert result["data"]["organization"]["id"] == "1717171717171717102"

    # The SDK's tenant header is honoured too.
    client.set_org_uid_header("1717171717171717102")
    again = graphql.Api(client).execute({"query": "{ organization { name } }"})
    assert again["data"]["organization"]["name"] == "Студія Олени"
    assert sdk_sandbox.state.stats["token_authorization_code"] == 1


def test_official_sdk_refreshes_an_expired_token(sdk_sandbox: StandaloneSandbox) -> None:
    """The SDK refreshes with its credentials in the body (none in an HTTP Basic header),
    so the sandbox's strict refresh accepts it."""
    with httpx.Client(base_url=sdk_sandbox.url) as browser:
        page = browser.get(
            "/ab/account-security/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": sdk_sandbox.client_id,
                "redirect_uri": REDIRECT,
            },
        )
        consent = parse_consent(page.text)
        r = browser.post(
            consent.action,
            data={
                "consent_id": consent.consent_id,
                "user_id": SANDBOX_USERS["alex"],
                "decision": "allow",
            },
        )
    code = httpx.URL(r.headers["location"]).params["code"]
    pair = httpx.post(
        f"{sdk_sandbox.url}/api/v3/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(sdk_sandbox.client_id, sdk_sandbox.client_secret),
    ).json()
    config = upwork.Config(
        {
            "client_id": sdk_sandbox.client_id,
            "client_secret": sdk_sandbox.client_secret,
            "token": {**pair, "expires_at": time.time() - 10},  # already expired
        }
    )
    client = upwork.Client(config)
    result = graphql.Api(client).execute({"query": "{ user { name } }"})
    assert result["data"]["user"]["name"] == "Alex M."
    assert sdk_sandbox.state.stats["token_refresh"] == 1
    assert client.get_actual_config().token["refresh_token"] != pair["refresh_token"]
