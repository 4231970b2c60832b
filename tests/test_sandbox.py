"""The Upwork sandbox on its own, over real HTTP, as a standalone server."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from .conftest import SANDBOX_USERS, StandaloneSandbox
from .helpers import parse_consent

REDIRECT = "http://127.0.0.1:9/callback"
SandboxFactory = Callable[[list[str]], StandaloneSandbox]


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> StandaloneSandbox:
    return sandbox_factory([REDIRECT])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_params(sb: StandaloneSandbox, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": sb.client_id,
        "redirect_uri": REDIRECT,
        "state": "st-123",
        **extra,
    }


def get_code(
    sb: StandaloneSandbox, user: str = SANDBOX_USERS["alex"], **extra: str
) -> tuple[str, dict[str, str]]:
    with httpx.Client(base_url=sb.url) as c:
        page = c.get("/ab/account-security/oauth2/authorize", params=authorize_params(sb, **extra))
        assert page.status_code == 200, page.text
        consent = parse_consent(page.text)
        r = c.post(
            consent.action,
            data={"consent_id": consent.consent_id, "user_id": user, "decision": "allow"},
        )
        assert r.status_code == 302
        q = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
        return q["code"], q


def token(sb: StandaloneSandbox, data: dict[str, str], basic: bool = False) -> httpx.Response:
    if basic:
        return httpx.post(
            f"{sb.url}/api/v3/oauth2/token", data=data, auth=(sb.client_id, sb.client_secret)
        )
    return httpx.post(
        f"{sb.url}/api/v3/oauth2/token",
        data={"client_id": sb.client_id, "client_secret": sb.client_secret, **data},
    )


def exchange(sb: StandaloneSandbox, code: str, **extra: str) -> httpx.Response:
    return token(
        sb, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    )


def gql(
    sb: StandaloneSandbox, access: str | None, query: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    h = {"Authorization": f"Bearer {access}"} if access else {}
    return httpx.post(f"{sb.url}/graphql", json={"query": query}, headers={**h, **(headers or {})})


# ----- authorization endpoint -------------------------------------------------------------


def test_consent_page_lists_users_and_escapes_html(sandbox: StandaloneSandbox) -> None:
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize", params=authorize_params(sandbox)
    )
    assert r.status_code == 200
    consent = parse_consent(r.text)
    assert len(consent.users) >= 4 and set(SANDBOX_USERS.values()) <= set(consent.users)
    assert "Олена Коваленко" in r.text
    assert "<script>alert" not in r.text and "&lt;script&gt;" in r.text
    assert r.headers["x-frame-options"] == "DENY"


def test_unknown_client_is_an_error_page_not_a_redirect(sandbox: StandaloneSandbox) -> None:
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize",
        params=authorize_params(sandbox, client_id="nobody"),
    )
    assert r.status_code == 400 and "location" not in r.headers
    assert "Unknown client_id" in r.text


@pytest.mark.parametrize(
    "uri", ["http://evil.example/callback", REDIRECT + "/x", REDIRECT + "?a=1", ""]
)
def test_unregistered_redirect_uri_never_redirected_to(
    sandbox: StandaloneSandbox, uri: str
) -> None:
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize",
        params=authorize_params(sandbox, redirect_uri=uri),
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_wrong_response_type_redirects_with_error(sandbox: StandaloneSandbox) -> None:
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize",
        params=authorize_params(sandbox, response_type="token"),
    )
    assert r.status_code == 302
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["error"] == ["unsupported_response_type"] and q["state"] == ["st-123"]


def test_plain_pkce_method_refused(sandbox: StandaloneSandbox) -> None:
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize",
        params=authorize_params(sandbox, code_challenge="a" * 43, code_challenge_method="plain"),
    )
    assert r.status_code == 302 and "error=invalid_request" in r.headers["location"]


def test_deny_returns_access_denied_with_state(sandbox: StandaloneSandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as c:
        page = c.get("/ab/account-security/oauth2/authorize", params=authorize_params(sandbox))
        consent = parse_consent(page.text)
        r = c.post(consent.action, data={"consent_id": consent.consent_id, "decision": "deny"})
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    q = parse_qs(urlsplit(location).query)
    assert q["error"] == ["access_denied"] and q["state"] == ["st-123"] and "code" not in q


def test_allow_returns_code_and_unchanged_state(sandbox: StandaloneSandbox) -> None:
    odd_state = "a b+c/=&ü"
    code, q = get_code(sandbox, state=odd_state)
    assert q["state"] == odd_state and len(code) >= 32


def test_consent_form_is_single_use(sandbox: StandaloneSandbox) -> None:
    with httpx.Client(base_url=sandbox.url) as c:
        page = c.get("/ab/account-security/oauth2/authorize", params=authorize_params(sandbox))
        consent = parse_consent(page.text)
        data = {"consent_id": consent.consent_id, "user_id": consent.users[0], "decision": "allow"}
        assert c.post(consent.action, data=data).status_code == 302
        again = c.post(consent.action, data=data)
    assert again.status_code == 400 and "location" not in again.headers


# ----- token endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize("basic", [False, True], ids=["form-auth", "basic-auth"])
def test_code_exchange(sandbox: StandaloneSandbox, basic: bool) -> None:
    code, _ = get_code(sandbox)
    r = token(
        sandbox,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        basic=basic,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert r.headers["cache-control"] == "no-store"


def test_bad_client_credentials(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    r = httpx.post(
        f"{sandbox.url}/api/v3/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=(sandbox.client_id, "wrong"),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "basic" in r.headers["www-authenticate"].lower()
    r = httpx.post(
        f"{sandbox.url}/api/v3/oauth2/token",
        data={"grant_type": "authorization_code", "code": code},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_json_body_refused(sandbox: StandaloneSandbox) -> None:
    r = httpx.post(f"{sandbox.url}/api/v3/oauth2/token", json={"grant_type": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_code_single_use_and_reuse_revokes_tokens(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    first = exchange(sandbox, code).json()
    assert gql(sandbox, first["access_token"], "{ user { id } }").status_code == 200
    again = exchange(sandbox, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # RFC 6749 4.1.2: tokens issued from a code used twice are revoked.
    assert gql(sandbox, first["access_token"], "{ user { id } }").status_code == 401


def test_code_expires_after_ten_minutes(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    sandbox.state.codes[code].expires_at = time.time() - 1
    r = exchange(sandbox, code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "expired" in r.json()["error_description"]


def test_redirect_uri_must_match(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    r = exchange(sandbox, code, redirect_uri="http://127.0.0.1:9/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_pkce_verified(sandbox: StandaloneSandbox) -> None:
    verifier, challenge = pkce()
    code, _ = get_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    missing = exchange(sandbox, code)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_grant"
    code, _ = get_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    wrong = exchange(sandbox, code, code_verifier=pkce()[0])
    assert wrong.status_code == 400
    code, _ = get_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    ok = exchange(sandbox, code, code_verifier=verifier)
    assert ok.status_code == 200


@pytest.mark.parametrize("rotate", [True, False])
def test_refresh_grant(sandbox: StandaloneSandbox, rotate: bool) -> None:
    sandbox.faults(rotate_refresh_token=rotate)
    code, _ = get_code(sandbox)
    first = exchange(sandbox, code).json()
    r = token(sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["access_token"] != first["access_token"]
    assert gql(sandbox, second["access_token"], "{ user { id } }").status_code == 200
    if rotate:
        assert second["refresh_token"] != first["refresh_token"]
        stale = token(
            sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        )
        assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    else:
        assert second["refresh_token"] == first["refresh_token"]


def test_refresh_token_lifetime(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    first = exchange(sandbox, code).json()
    grant = sandbox.state.refresh_tokens[first["refresh_token"]]
    assert abs(grant.expires_at - time.time() - 14 * 86400) < 60
    grant.expires_at = time.time() - 1
    r = token(sandbox, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_unsupported_grant(sandbox: StandaloneSandbox) -> None:
    r = token(sandbox, {"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_short_lifetimes_and_no_expires_in(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(access_token_ttl=1, omit_expires_in=True)
    code, _ = get_code(sandbox)
    body = exchange(sandbox, code).json()
    assert "expires_in" not in body
    time.sleep(1.1)
    assert gql(sandbox, body["access_token"], "{ user { id } }").status_code == 401


@pytest.mark.parametrize(
    ("faults", "status"), [({"token_status": 500}, 500), ({"token_status": 503}, 503)]
)
def test_token_fault_status(
    sandbox: StandaloneSandbox, faults: dict[str, Any], status: int
) -> None:
    sandbox.faults(**faults)
    assert token(sandbox, {"grant_type": "authorization_code"}).status_code == status


def test_token_fault_non_json(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(token_non_json=True)
    r = token(sandbox, {"grant_type": "authorization_code"})
    assert r.headers["content-type"].startswith("text/html")


def test_token_fault_slow(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(token_delay=0.5)
    started = time.monotonic()
    token(sandbox, {"grant_type": "password"})
    assert time.monotonic() - started >= 0.5


def test_unknown_fault_setting_refused(sandbox: StandaloneSandbox) -> None:
    r = httpx.patch(f"{sandbox.url}/_sandbox/faults", json={"explode": True})
    assert r.status_code == 400 and "explode" in r.json()["message"]
    sandbox.faults(token_status=500)
    assert httpx.delete(f"{sandbox.url}/_sandbox/faults").json()["token_status"] is None


# ----- GraphQL ----------------------------------------------------------------------------


def access_for(sb: StandaloneSandbox, user: str = SANDBOX_USERS["olena"]) -> str:
    code, _ = get_code(sb, user)
    return str(exchange(sb, code).json()["access_token"])


def test_graphql_user_and_organization(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    r = gql(sandbox, access, "query { user { id nid rid name email } organization { id name } }")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["user"] == {
        "id": SANDBOX_USERS["olena"],
        "nid": "olenakovalenko",
        "rid": "7000002",
        "name": "Олена Коваленко",
        "email": "olena.kovalenko@example.com",
    }
    assert data["organization"]["name"] == "Студія Олени"


def test_graphql_no_email_user(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["noemail"])
    assert gql(sandbox, access, "{ user { email } }").json()["data"]["user"]["email"] is None


@pytest.mark.parametrize("auth", [None, "unknown-token"])
def test_graphql_401(sandbox: StandaloneSandbox, auth: str | None) -> None:
    r = gql(sandbox, auth, "{ user { id } }")
    assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]


def test_graphql_unknown_field_is_validation_error(sandbox: StandaloneSandbox) -> None:
    r = gql(sandbox, access_for(sandbox), "{ user { id password } }")
    assert r.status_code == 200
    body = r.json()
    assert body["data"] is None
    assert "password" in body["errors"][0]["message"]


def test_graphql_variables_and_operation_name(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    r = httpx.post(
        f"{sandbox.url}/graphql",
        headers={"Authorization": f"Bearer {access}"},
        json={
            "query": "query A { user { id } } query B { organization { id } }",
            "operationName": "B",
        },
    )
    assert r.json()["data"] == {"organization": {"id": "1717171717171717102"}}


def test_graphql_bad_body(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    r = httpx.post(
        f"{sandbox.url}/graphql", content=b"not json", headers={"Authorization": f"Bearer {access}"}
    )
    assert r.status_code == 400


def test_graphql_tenant_header(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    ok = gql(
        sandbox, access, "{ organization { id } }", {"X-Upwork-API-TenantId": "1717171717171717102"}
    )
    assert ok.status_code == 200
    other = gql(sandbox, access, "{ organization { id } }", {"X-Upwork-API-TenantId": "999"})
    assert other.status_code == 403


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        ({"graphql_status": 500}, 500),
        ({"graphql_status": 401}, 401),
        ({"graphql_status": 429, "retry_after": 7}, 429),
        ({"graphql_errors": True}, 200),
    ],
)
def test_graphql_faults(sandbox: StandaloneSandbox, faults: dict[str, Any], status: int) -> None:
    access = access_for(sandbox)
    sandbox.faults(**faults)
    r = gql(sandbox, access, "{ user { id } }")
    assert r.status_code == status
    if status == 429:
        assert r.headers["retry-after"] == "7"
    if status == 200:
        assert r.json()["errors"] and r.json()["data"] is None


def test_graphql_user_patch(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    sandbox.faults(user_patch={"id": None})
    assert gql(sandbox, access, "{ user { id name } }").json()["data"]["user"]["id"] is None


def test_stats_count_requests(sandbox: StandaloneSandbox) -> None:
    access_for(sandbox)
    stats = httpx.get(f"{sandbox.url}/_sandbox/stats").json()
    assert stats["token_requests"] == 1 and stats["token_authorization_code"] == 1


def test_index_page(sandbox: StandaloneSandbox) -> None:
    r = httpx.get(sandbox.url + "/")
    assert r.status_code == 200 and sandbox.client_id in r.text and REDIRECT in r.text


def test_authorize_query_survives_urlencode(sandbox: StandaloneSandbox) -> None:
    url = f"{sandbox.url}/ab/account-security/oauth2/authorize?" + urlencode(
        authorize_params(sandbox, scope="openid profile")
    )
    assert httpx.get(url).status_code == 200
