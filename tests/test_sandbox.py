"""The Upwork sandbox on its own, over real HTTP, as a standalone server."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from graphql import GraphQLObjectType
from starlette.applications import Starlette
from starlette.routing import Mount
from typer.testing import CliRunner

from upwork_assistant import cli
from upwork_assistant.sandbox import (
    DEFAULT_SCOPES,
    SCOPES,
    SandboxClient,
    SandboxConfig,
    create_sandbox_app,
    parse_scopes,
)
from upwork_assistant.sandbox.schema import build as build_schema
from upwork_assistant.sandbox.state import Grant, IpRateLimiter

from .fixtures import SANDBOX_USERS, StandaloneSandbox
from .helpers import parse_consent, serve

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
        # The rotated-away token's grace is tested below; without one it is dead at once.
        sandbox.faults(old_refresh_grace=0)
        third = token(
            sandbox, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
        )
        stale = token(
            sandbox, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
        )
        assert third.status_code == 200
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
    sandbox.faults(scopes=["all"])
    r = gql(sandbox, access, "query { user { id nid rid name email } organization { id name } }")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["user"] == {
        "id": SANDBOX_USERS["olena"],
        "nid": "olenakovalenko",
        "rid": "7000002",
        "name": "Олена " + "Коваленко"[0] + ".",  # first name + last initial
        "email": "olena.kovalenko@example.com",
    }
    assert data["organization"]["name"] == "Студія Олени"


def test_graphql_no_email_user(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["noemail"])
    sandbox.faults(scopes=["common-entities", "user-email"])
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
    sandbox.faults(scopes=["all"])
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
    sandbox.faults(scopes=["all"])
    ok = gql(
        sandbox, access, "{ organization { id } }", {"X-Upwork-API-TenantId": "1717171717171717102"}
    )
    assert ok.status_code == 200 and ok.json()["data"]["organization"]["id"]
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


# ----- scopes -----------------------------------------------------------------------------

SCOPE_ERROR = (
    "The client or authentication token doesn't have enough oauth2 permissions/scopes "
    "to access: [{}]"
)
EVERY_FIELD = """{
  user { id nid rid name email photoUrl ciphertext }
  organization { id rid name type legacyType }
  companySelector { items { title organizationId organizationRid photoUrl } }
}"""


def test_scope_error_fails_the_whole_query_with_200(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    r = gql(sandbox, access, "query {\n  user { id name email }\n  organization { id }\n}")
    assert r.status_code == 200
    assert r.json() == {
        "data": None,
        "errors": [
            {
                "message": SCOPE_ERROR.format(
                    "CurrentUser.email, Query.organization, Organization.id"
                ),
                "locations": [{"line": 2, "column": 18}],  # the `email`
                "extensions": {"classification": "ExecutionAborted"},
            }
        ],
    }
    # Each field once, however often it is selected; granted fields alone run fine.
    twice = gql(sandbox, access, "{ user { email } again: user { email name } }")
    assert twice.json()["errors"][0]["message"] == SCOPE_ERROR.format("CurrentUser.email")
    ok = gql(sandbox, access, "{ user { id nid rid name photoUrl ciphertext __typename } }")
    assert ok.json()["data"]["user"]["__typename"] == "CurrentUser" and "errors" not in ok.json()
    assert httpx.get(f"{sandbox.url}/_sandbox/stats").json()["scope_errors"] == 2


def test_fragments_cannot_hide_a_field(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    for query in (
        "{ user { ...F } } fragment F on CurrentUser { id email }",
        "{ user { ...A } } fragment A on User { ...B } fragment B on CurrentUser { email }",
        "{ user { ... on CurrentUser { email } } }",
        "query Q { ...R } fragment R on Query { user { email } }",
    ):
        r = gql(sandbox, access, query)
        assert r.status_code == 200 and r.json()["data"] is None, query
        assert r.json()["errors"][0]["message"] == SCOPE_ERROR.format("CurrentUser.email"), query


def test_introspection_and_validation_errors_are_not_scope_errors(
    sandbox: StandaloneSandbox,
) -> None:
    access = access_for(sandbox)
    r = gql(sandbox, access, "{ __schema { queryType { name } } }")
    assert r.json()["data"]["__schema"]["queryType"]["name"] == "Query"
    invalid = gql(sandbox, access, "{ user { email password } }").json()
    assert invalid["data"] is None and "password" in invalid["errors"][0]["message"]
    assert "oauth2" not in invalid["errors"][0]["message"]


def test_all_scopes_grant_every_field(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    sandbox.faults(scopes=["all"])
    assert httpx.get(f"{sandbox.url}/_sandbox/faults").json()["scopes"] == list(SCOPES)
    body = gql(sandbox, access, EVERY_FIELD).json()
    assert "errors" not in body and body["data"]["companySelector"]["items"][0]["title"]
    # Every field of the schema belongs to some scope, so "all" really is all.
    granted = set().union(*(s.fields for s in SCOPES.values()))
    for name, gql_type in build_schema().type_map.items():
        if isinstance(gql_type, GraphQLObjectType) and not name.startswith("__"):
            assert {f"{name}.{field}" for field in gql_type.fields} <= granted


def test_client_scopes_and_their_shorthands(sandbox_factory: SandboxFactory) -> None:
    assert parse_scopes("") == DEFAULT_SCOPES == ("common-entities",)
    assert (
        parse_scopes("all")
        == tuple(SCOPES)
        == (
            "common-entities",
            "user-email",
            "organization",
            "freelancer-profile",
            "profile-country",
        )
    )
    assert parse_scopes(" user-email, common-entities ") == ("user-email", "common-entities")
    with pytest.raises(ValueError, match="known scopes: common-entities, user-email"):
        parse_scopes("common-entities,profile")
    client = SandboxClient("c", "s", (REDIRECT,), scopes=("all",))
    assert client.scopes == tuple(SCOPES)
    assert SandboxClient("c", "s", (REDIRECT,)).scopes == DEFAULT_SCOPES
    config = SandboxConfig(clients=[SandboxClient("c", "s", (REDIRECT,), ("common-entities",))])
    with serve(create_sandbox_app(config)) as url:
        params = {"response_type": "code", "client_id": "c", "redirect_uri": REDIRECT}
        consent = httpx.get(f"{url}/ab/account-security/oauth2/authorize", params=params)
        index = httpx.get(f"{url}/")
    for page in (consent, index):
        assert "Common Entities - Read-Only Access" in page.text
        assert "User email" not in page.text


def test_scopes_over_the_faults_api(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox)
    sandbox.faults(scopes=["common-entities", "user-email"])
    assert gql(sandbox, access, "{ user { email } }").json()["data"]["user"]["email"]
    for bad in (["nope"], "all", [1]):
        r = httpx.patch(f"{sandbox.url}/_sandbox/faults", json={"scopes": bad})
        assert r.status_code == 400 and "scopes" in r.json()["message"]
    unknown = httpx.patch(f"{sandbox.url}/_sandbox/faults", json={"scopes": ["nope"]})
    assert (
        "known scopes: common-entities, user-email, organization, freelancer-profile, "
        "profile-country, all" in unknown.text
    )
    sandbox.faults(scopes=None)  # back to the client's own scopes
    assert gql(sandbox, access, "{ user { email } }").json()["data"] is None


# ----- users as Upwork sends them ---------------------------------------------------------


def test_names_are_first_name_and_last_initial(sandbox: StandaloneSandbox) -> None:
    names = {
        key: gql(sandbox, access_for(sandbox, user), "{ user { name } }").json()["data"]
        for key, user in SANDBOX_USERS.items()
    }
    assert names["alex"] == {"user": {"name": "Alex M."}}
    assert names["olena"] == {"user": {"name": "Олена " + "Коваленко"[0] + "."}}
    assert names["noemail"] == {"user": {"name": "Sam P."}}
    html_name = names["html"]["user"]["name"]
    assert len(html_name) == 300 and html_name.startswith("<script>")  # sent whole


def test_photo_url_is_served_by_the_sandbox(sandbox: StandaloneSandbox) -> None:
    user = gql(sandbox, access_for(sandbox), "{ user { id photoUrl } }").json()["data"]["user"]
    assert user["photoUrl"] == f"{sandbox.url}/_sandbox/portraits/{user['id']}.svg"
    r = httpx.get(user["photoUrl"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in r.text and ">" + "Олена"[0] + "Коваленко"[0] + "<" in r.text  # initials
    html_user = httpx.get(f"{sandbox.url}/_sandbox/portraits/{SANDBOX_USERS['html']}.svg")
    assert "<script" not in html_user.text
    assert httpx.get(f"{sandbox.url}/_sandbox/portraits/42.svg").status_code == 404


def test_photo_url_under_a_mount_prefix() -> None:
    sandbox_app = create_sandbox_app(SandboxConfig(clients=[SandboxClient("c", "s", (REDIRECT,))]))
    sandbox_app.state.sandbox.access_tokens["tok"] = Grant(
        "c", SANDBOX_USERS["alex"], time.time() + 60, "family"
    )
    outer = Starlette(routes=[Mount("/sandbox/upwork", sandbox_app)])
    with serve(outer) as url:
        r = httpx.post(
            f"{url}/sandbox/upwork/graphql",
            json={"query": "{ user { photoUrl } }"},
            headers={"Authorization": "Bearer tok"},
        )
        photo = r.json()["data"]["user"]["photoUrl"]
        assert photo == f"{url}/sandbox/upwork/_sandbox/portraits/{SANDBOX_USERS['alex']}.svg"
        assert httpx.get(photo).status_code == 200


def test_ciphertext_is_a_stable_profile_key(sandbox: StandaloneSandbox) -> None:
    query = "{ user { ciphertext } }"

    def ciphertext(user: str) -> str:
        return str(
            gql(sandbox, access_for(sandbox, user), query).json()["data"]["user"]["ciphertext"]
        )

    first, again = ciphertext(SANDBOX_USERS["alex"]), ciphertext(SANDBOX_USERS["alex"])
    assert re.fullmatch(r"~01[0-9a-f]{16}", first) and first == again
    assert ciphertext(SANDBOX_USERS["olena"]) != first


# ----- token endpoint: what real Upwork does ----------------------------------------------


def refresh_with(sb: StandaloneSandbox, refresh_token: str, basic: bool = False) -> httpx.Response:
    return token(sb, {"grant_type": "refresh_token", "refresh_token": refresh_token}, basic)


def test_refresh_with_basic_auth_refused(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    pair = token(  # the code exchange accepts Basic, as Upwork's Python SDK sends it
        sandbox,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        basic=True,
    ).json()
    r = refresh_with(sandbox, pair["refresh_token"], basic=True)
    assert r.status_code == 400
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "Missing parameters: client_id",
    }
    sandbox.faults(refresh_basic_auth=True)
    assert refresh_with(sandbox, pair["refresh_token"], basic=True).status_code == 200


def test_old_refresh_token_lives_24_hours_after_rotation(sandbox: StandaloneSandbox) -> None:
    code, _ = get_code(sandbox)
    first = exchange(sandbox, code).json()["refresh_token"]
    second = refresh_with(sandbox, first).json()["refresh_token"]
    grants = sandbox.state.refresh_tokens
    assert abs(grants[first].expires_at - time.time() - 86400) < 60
    assert abs(grants[second].expires_at - time.time() - 14 * 86400) < 60
    # Within the grace the old token still gives a fresh pair (and rotates again).
    third = refresh_with(sandbox, first)
    assert third.status_code == 200
    assert third.json()["refresh_token"] not in (first, second)
    assert abs(grants[first].expires_at - time.time() - 86400) < 60  # not extended
    grants[first].expires_at = time.time() - 1  # the 24 hours are over
    stale = refresh_with(sandbox, first)
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    # The grace never lengthens a token's life.
    grants[second].expires_at = time.time() + 10
    refresh_with(sandbox, second)
    assert grants[second].expires_at <= time.time() + 10


def test_expires_in_as_string(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(expires_in_as_string=True)
    code, _ = get_code(sandbox)
    assert exchange(sandbox, code).json()["expires_in"] == "86400"


# ----- per-IP rate limit ------------------------------------------------------------------


def test_per_ip_rate_limit_blocks_until_quiet(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(ip_block_seconds=1)
    # The limiter's clock moves only when the test moves it: on a busy host, real time
    # between the requests below ran past the block and the window.
    clock = [1000.0]
    sandbox.state.ip_limiter = IpRateLimiter(clock=lambda: clock[0])
    url = f"{sandbox.url}/api/v3/oauth2/token"
    with httpx.Client() as c:
        answers = [c.post(url, data={"grant_type": "password"}) for _ in range(11)]
        assert [a.status_code for a in answers] == [401] * 10 + [429]  # 401: no client
        assert answers[-1].json() == {"message": "Too Many Requests"}
        assert "retry-after" not in answers[-1].headers
        # The whole IP is blocked, GraphQL too, but not the pages and controls.
        clock[0] += 0.4
        assert (
            c.post(f"{sandbox.url}/graphql", json={"query": "{ user { id } }"}).status_code == 429
        )
        authorize = c.get(
            f"{sandbox.url}/ab/account-security/oauth2/authorize", params=authorize_params(sandbox)
        )
        assert authorize.status_code == 200
        # Each blocked request pushes the block further: 1.6 s after it began it still holds.
        clock[0] += 0.6
        assert c.post(url, data={"grant_type": "password"}).status_code == 429
        clock[0] += 0.6
        assert c.post(url, data={"grant_type": "password"}).status_code == 429
        clock[0] += 0.99
        assert c.post(url, data={"grant_type": "password"}).status_code == 429
        clock[0] += 1.01  # a second of quiet: the block is over, and the window empty
        assert c.post(url, data={"grant_type": "password"}).status_code == 401
    stats = httpx.get(f"{sandbox.url}/_sandbox/stats").json()
    assert stats["rate_limited"] == 5 and stats["token_requests"] == 15
    assert stats["graphql_requests"] == 1  # blocked requests still count as received


def test_per_ip_rate_limit_off(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(ip_rate_limit=0)
    with httpx.Client() as c:
        for _ in range(15):
            r = c.post(f"{sandbox.url}/api/v3/oauth2/token", data={"grant_type": "password"})
            assert r.status_code == 401


# ----- authentication errors, PKCE, deny --------------------------------------------------


def test_auth_errors_inside_a_200(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(auth_error_status=200)
    expected = {
        "data": None,
        "errors": [
            {
                "message": "Authentication failed: the access token is invalid, expired or revoked",
                "extensions": {"code": "UNAUTHENTICATED", "classification": "AuthenticationError"},
            }
        ],
    }
    access = access_for(sandbox)
    for auth in (None, "unknown-token", "fault"):
        if auth == "fault":  # the graphql_status 401 fault follows the same switch
            auth = access
            sandbox.faults(graphql_status=401)
        r = gql(sandbox, auth, "{ user { id } }")
        assert r.status_code == 200 and "www-authenticate" not in r.headers
        assert r.json() == expected


def test_pkce_ignored(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(pkce="ignore")
    _, challenge = pkce()
    code, _ = get_code(sandbox, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(sandbox, code).status_code == 200  # no verifier, never checked
    code, _ = get_code(sandbox, code_challenge="short", code_challenge_method="plain")
    assert exchange(sandbox, code, code_verifier="anything").status_code == 200


def test_pkce_rejected(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(pkce="reject")
    r = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize",
        params=authorize_params(sandbox, code_challenge=pkce()[1], code_challenge_method="S256"),
    )
    assert r.status_code == 302 and r.headers["location"].startswith(REDIRECT + "?")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q == {
        "error": ["invalid_request"],
        "error_description": ["PKCE is not supported"],
        "state": ["st-123"],
    }
    code, _ = get_code(sandbox)  # without PKCE all is well
    assert exchange(sandbox, code).status_code == 200


def test_deny_without_redirect(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(deny_redirect=False)
    with httpx.Client(base_url=sandbox.url) as c:
        page = c.get("/ab/account-security/oauth2/authorize", params=authorize_params(sandbox))
        consent = parse_consent(page.text)
        r = c.post(consent.action, data={"consent_id": consent.consent_id, "decision": "deny"})
    assert r.status_code == 200 and "location" not in r.headers
    assert "You denied access. You can close this window." in r.text


# ----- the faults API ---------------------------------------------------------------------


BAD_FAULTS: list[dict[str, Any]] = [
    {"ip_rate_limit": "fast"},
    {"ip_rate_limit": -1},
    {"ip_block_seconds": True},
    {"refresh_basic_auth": "yes"},
    {"expires_in_as_string": 1},
    {"old_refresh_grace": 1.5},
    {"auth_error_status": 403},
    {"pkce": "maybe"},
    {"deny_redirect": None},
    {"token_status": 42},
    {"user_patch": ["id"]},
    {"token_delay": 1, "pkce": "maybe"},  # all or nothing
]


def test_fault_values_validated(sandbox: StandaloneSandbox) -> None:
    before = httpx.get(f"{sandbox.url}/_sandbox/faults").json()
    with httpx.Client(base_url=sandbox.url) as c:
        for values in BAD_FAULTS:
            r = c.patch("/_sandbox/faults", json=values)
            assert r.status_code == 400 and r.json()["error"] == "invalid_request", values
            assert list(values)[-1] in r.json()["message"]
        assert c.get("/_sandbox/faults").json() == before


def test_strict_defaults_and_reset(sandbox: StandaloneSandbox) -> None:
    defaults = httpx.get(f"{sandbox.url}/_sandbox/faults").json()
    strict = {
        "scopes": None,
        "refresh_basic_auth": False,
        "old_refresh_grace": 86400,
        "expires_in_as_string": False,
        "ip_rate_limit": 10,
        "ip_block_seconds": 60,
        "auth_error_status": 401,
        "pkce": "enforce",
        "deny_redirect": True,
    }
    assert {k: defaults[k] for k in strict} == strict
    sandbox.faults(pkce="reject", scopes=["all"], ip_rate_limit=1.5, auth_error_status=200)
    assert httpx.delete(f"{sandbox.url}/_sandbox/faults").json() == defaults


def test_sandbox_command_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **_: served.append(app))
    runner = CliRunner()
    result = runner.invoke(cli.app, ["sandbox", "--scopes", "common-entities,user-email"])
    assert result.exit_code == 0, result.output
    assert "scope:         user-email (User email" in result.output
    assert served[0].state.sandbox.clients["sandbox-client-id"].scopes == (
        "common-entities",
        "user-email",
    )
    default = runner.invoke(cli.app, ["sandbox"])
    assert "common-entities (Common Entities - Read-Only Access)" in default.output
    assert "user-email" not in default.output
    bad = runner.invoke(cli.app, ["sandbox", "--scopes", "everything"])
    assert bad.exit_code == 2 and "known scopes" in bad.output
