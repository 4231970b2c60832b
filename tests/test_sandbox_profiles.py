"""The sandbox's freelancer profiles over real HTTP: scopes, every user's data, the by-key
query, the client without a profile and the portraits."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import GraphQLNamedType, GraphQLObjectType, get_named_type

from upwork_assistant.sandbox import default_users
from upwork_assistant.sandbox.profiles import HTML, HTML_OVERVIEW_LENGTH
from upwork_assistant.sandbox.schema import build as build_schema

from .fixtures import SANDBOX_USERS, StandaloneSandbox, extra_users
from .helpers import parse_consent
from .test_sandbox import REDIRECT, SCOPE_ERROR, access_for, authorize_params

CHRIS = "1717171717171717005"  # the client without a freelancer profile
PROFILE_SCOPES = ["common-entities", "freelancer-profile"]


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., StandaloneSandbox]) -> StandaloneSandbox:
    sb = sandbox_factory([REDIRECT])
    sb.faults(ip_rate_limit=0)  # these tests send many requests from one IP
    return sb


def run(
    sb: StandaloneSandbox, access: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    r = httpx.post(
        f"{sb.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def selection(gql_type: GraphQLNamedType, skip: frozenset[str] = frozenset()) -> str:
    """Every field of an object type, recursively, as a selection set."""
    if not isinstance(gql_type, GraphQLObjectType):
        return ""
    parts = []
    for name, gql_field in gql_type.fields.items():
        if f"{gql_type.name}.{name}" in skip:
            continue
        parts.append(f"{name} {selection(get_named_type(gql_field.type), skip)}".strip())
    return "{ " + " ".join(parts) + " }"


SCHEMA = build_schema()
PROFILE_TYPE = SCHEMA.get_type("FreelancerProfile")
assert PROFILE_TYPE is not None
#: Every field of FreelancerProfile, except the one the profile scope does not grant.
PROFILE = selection(PROFILE_TYPE, frozenset({"FreelancerProfile.countryDetails"}))
FULL_PROFILE = selection(PROFILE_TYPE)
OWN = "query { user { ciphertext freelancerProfile " + PROFILE + " } }"
BY_KEY = (
    "query P($key: String!) { freelancerProfileByProfileKey(profileKey: $key) " + PROFILE + " }"
)


def own_profile(sb: StandaloneSandbox, user: str) -> dict[str, Any]:
    body = run(sb, access_for(sb, user), OWN)
    assert "errors" not in body, body
    profile: dict[str, Any] = body["data"]["user"]["freelancerProfile"]
    return profile


def ciphertext(sb: StandaloneSandbox, user: str) -> str:
    data = run(sb, access_for(sb, user), "{ user { ciphertext } }")["data"]
    return str(data["user"]["ciphertext"])


def edges(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in connection["edges"]]


# ----- scopes -----------------------------------------------------------------------------


def test_default_scopes_refuse_the_profile(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["alex"])
    body = run(sandbox, access, "{ user { freelancerProfile { fullName } } }")
    assert body["data"] is None
    assert body["errors"][0]["message"] == SCOPE_ERROR.format(
        "CurrentUser.freelancerProfile, FreelancerProfile.fullName"
    )
    key = ciphertext(sandbox, SANDBOX_USERS["alex"])
    by_key = run(sandbox, access, BY_KEY.replace(PROFILE, "{ fullName }"), {"key": key})
    assert by_key["data"] is None
    assert by_key["errors"][0]["message"] == SCOPE_ERROR.format(
        "Query.freelancerProfileByProfileKey, FreelancerProfile.fullName"
    )


def test_profile_scope_answers_and_country_needs_its_own(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["alex"])
    sandbox.faults(scopes=PROFILE_SCOPES)
    ok = run(sandbox, access, "{ user { freelancerProfile { fullName } } }")
    assert ok == {"data": {"user": {"freelancerProfile": {"fullName": "Alex Morgan"}}}}
    country = "{ user { freelancerProfile { fullName countryDetails { name } } } }"
    refused = run(sandbox, access, country)
    assert refused["data"] is None
    assert refused["errors"][0]["message"] == SCOPE_ERROR.format("FreelancerProfile.countryDetails")
    sandbox.faults(scopes=[*PROFILE_SCOPES, "profile-country"])
    answered = run(sandbox, access, country)["data"]["user"]["freelancerProfile"]
    assert answered["countryDetails"] == {"name": "Portugal"}


def test_all_scopes_answer_every_profile_field(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["alex"])
    sandbox.faults(scopes=["all"])
    body = run(sandbox, access, "{ user { email freelancerProfile " + FULL_PROFILE + " } }")
    assert "errors" not in body
    profile = body["data"]["user"]["freelancerProfile"]
    assert profile["countryDetails"] == {
        "id": "177",
        "name": "Portugal",
        "twoLetterAbbreviation": "PT",
        "threeLetterAbbreviation": "PRT",
    }


# ----- the users' profiles ----------------------------------------------------------------


def test_alex_is_an_ordinary_freelancer(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    p = own_profile(sandbox, SANDBOX_USERS["alex"])
    key = ciphertext(sandbox, SANDBOX_USERS["alex"])
    data = p["personalData"]
    assert (p["fullName"], p["firstName"], p["lastName"]) == ("Alex Morgan", "Alex", "Morgan")
    assert data["title"] == "Full-stack Python developer (FastAPI, PostgreSQL)"
    assert data["description"].count("\n\n") >= 2
    assert data["chargeRate"] == {"rawValue": "65.00", "currency": "USD", "displayValue": "$65.00"}
    assert data["profileUrl"] == f"https://www.upwork.com/freelancers/{key}"
    assert data["profileUrl"].startswith("https://www.upwork.com/freelancers/~01")
    assert data["address"]["cityName"] == "Lisbon" and data["address"]["countryName"] == "Portugal"
    assert data["address"]["timezone"] == "Europe/Lisbon"
    skills = edges(p["skills"])
    assert 8 <= len(skills) <= 12 and all(s["preferredLabel"] and s["prettyName"] for s in skills)
    languages = [n["language"]["iso639Code"] for n in edges(p["languages"])]
    assert languages == ["en", "es"]
    assert p["availability"]["name"] == "Available" and p["availability"]["capacity"] == "fullTime"
    agg = p["aggregates"]
    assert agg["jobSuccessScore"] == 98.0 and agg["topRatedStatus"] == "top_rated"
    assert agg["totalFeedback"] == 4.95 and agg["totalHours"] > 0
    assert agg["totalHourlyJobs"] + agg["totalFixedJobs"] > 0
    assert agg["totalEarnings"] == {
        "rawValue": "48250.00",
        "currency": "USD",
        "displayValue": "$48,250.00",
    }
    assert len(p["employmentRecords"]) == 2 and len(p["educationRecords"]) == 1
    prefs = p["userPreferences"]
    assert prefs["hideEarnings"] is False and prefs["hideJss"] is False
    assert p["userDetails"] == {
        "id": SANDBOX_USERS["alex"],
        "nid": "alexmorgan",
        "rid": "7000001",
        "name": "Alex M.",
        "photoUrl": f"{sandbox.url}/_sandbox/portraits/{SANDBOX_USERS['alex']}.svg",
        "ciphertext": key,
    }


def test_olena_writes_in_ukrainian_and_is_busy(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    before = datetime.now(UTC)
    p = own_profile(sandbox, SANDBOX_USERS["olena"])
    data = p["personalData"]
    cyrillic = re.compile("[\u0400-\u04ff]")
    assert cyrillic.search(data["title"]) and data["description"].count("\n\n") >= 2
    assert len(cyrillic.findall(data["description"])) > 100
    assert data["address"]["cityName"] == "Kyiv" and data["address"]["timezone"] == "Europe/Kyiv"
    assert data["chargeRate"]["rawValue"] == "40.00" and data["chargeRate"]["currency"] == "USD"
    assert [n["language"]["iso639Code"] for n in edges(p["languages"])] == ["uk", "en"]
    availability = p["availability"]
    assert availability["name"] == "Not available"
    when = availability["availabilityDateTime"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when)
    delta = datetime.fromisoformat(when.replace("Z", "+00:00")) - before
    assert timedelta(days=13) < delta < timedelta(days=15)
    agg = p["aggregates"]
    assert agg["jobSuccessScore"] == 100.0 and agg["topRatedStatus"] == "top_rated_plus"


def test_sam_hides_earnings_and_score_yet_upwork_sends_them(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    p = own_profile(sandbox, SANDBOX_USERS["noemail"])
    prefs = p["userPreferences"]
    assert prefs["hideEarnings"] is True and prefs["hideJss"] is True
    # The data still carries them: dropping them is the product's job.
    assert p["aggregates"]["jobSuccessScore"] is not None
    assert p["aggregates"]["totalEarnings"]["rawValue"]
    data = p["personalData"]
    assert data["chargeRate"]["rawValue"] == "30.00" and len(data["description"]) < 200
    assert data["address"]["timezone"] == "America/Toronto"


def test_html_user_overview_round_trips(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    p = own_profile(sandbox, SANDBOX_USERS["html"])
    overview = p["personalData"]["description"]
    assert len(overview) == HTML_OVERVIEW_LENGTH == 5000 and overview == HTML.overview
    for piece in ("<script>alert(1)</script>", "<b>", "<img src=x onerror=alert(1)>", "&amp;"):
        assert piece in overview, piece
    assert "👩‍💻" in overview and "🇺🇦" in overview and "\n\n\n" in overview
    assert "<" in p["personalData"]["title"]
    assert p["personalData"]["chargeRate"]["currency"] == "USD"
    assert p["aggregates"]["jobSuccessScore"] is None
    assert p["aggregates"]["topRatedStatus"] in (None, "rising_talent")
    labels = [s["preferredLabel"] for s in edges(p["skills"])]
    assert len({label.lower() for label in labels}) < len(set(labels))  # case-only duplicate


# ----- by key, and the client without a profile -------------------------------------------


def test_by_key_equals_the_users_own_profile(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    alex = access_for(sandbox, SANDBOX_USERS["alex"])
    for key in ("alex", "olena", "noemail", "html"):
        user = SANDBOX_USERS[key]
        variables = {"key": ciphertext(sandbox, user)}
        found = run(sandbox, alex, BY_KEY, variables)["data"]["freelancerProfileByProfileKey"]
        own = own_profile(sandbox, user)
        # Counted from each query's "now": equal to within the seconds between the queries.
        when = [_moment(p["availability"].pop("availabilityDateTime")) for p in (found, own)]
        assert when[0] is when[1] is None or abs(when[0] - when[1]) < timedelta(minutes=1)
        assert found == own, key
    # In one query there is one "now": the two answers are identical.
    both = run(
        sandbox,
        access_for(sandbox, SANDBOX_USERS["olena"]),
        BOTH,
        {"key": ciphertext(sandbox, SANDBOX_USERS["olena"])},
    )["data"]
    assert both["freelancerProfileByProfileKey"] == both["user"]["freelancerProfile"]
    assert both["user"]["freelancerProfile"]["availability"]["availabilityDateTime"]


BOTH = (
    "query P($key: String!) { user { freelancerProfile "
    + PROFILE
    + " } freelancerProfileByProfileKey(profileKey: $key) "
    + PROFILE
    + " }"
)


def _moment(iso: str | None) -> Any:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00"))


def test_client_has_no_profile(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=["all"])
    access = access_for(sandbox, CHRIS)
    body = run(
        sandbox, access, "{ user { id name email ciphertext freelancerProfile { fullName } } }"
    )
    assert "errors" not in body
    user = body["data"]["user"]
    assert user["freelancerProfile"] is None
    assert (user["name"], user["email"]) == ("Chris H.", "chris.hale@example.com")
    org = run(sandbox, access, "{ organization { name } }")["data"]
    assert org == {"organization": {"name": "Hale Ventures"}}
    for key in (user["ciphertext"], "~01nobody"):
        missing = run(sandbox, access, BY_KEY.replace(PROFILE, "{ fullName }"), {"key": key})
        assert missing["data"] is None
        assert missing["errors"][0]["message"] == "Freelancer profile not found"
        assert missing["errors"][0]["path"] == ["freelancerProfileByProfileKey"]


def test_client_shown_on_consent_and_index_pages(sandbox: StandaloneSandbox) -> None:
    page = httpx.get(
        f"{sandbox.url}/ab/account-security/oauth2/authorize", params=authorize_params(sandbox)
    )
    consent = parse_consent(page.text)
    assert consent.users[0] == SANDBOX_USERS["alex"] and CHRIS in consent.users
    index = httpx.get(f"{sandbox.url}/").text
    for text in (page.text, index):
        assert "Chris Hale" in text and "no freelancer profile" in text


def test_extra_users_have_working_profiles(
    sandbox_factory: Callable[..., StandaloneSandbox],
) -> None:
    sb = sandbox_factory([REDIRECT], users=default_users() + extra_users(2))
    sb.faults(ip_rate_limit=0, scopes=PROFILE_SCOPES)
    p = own_profile(sb, "1800000000000000001")
    assert p["fullName"] == "Sandbox User 1" and p["userDetails"]["nid"] == "user1"


def test_user_patch_fault_still_applies(sandbox: StandaloneSandbox) -> None:
    access = access_for(sandbox, SANDBOX_USERS["alex"])
    sandbox.faults(scopes=PROFILE_SCOPES, user_patch={"id": None})
    user = run(sandbox, access, "{ user { id freelancerProfile { fullName } } }")["data"]["user"]
    assert user == {"id": None, "freelancerProfile": {"fullName": "Alex Morgan"}}


# ----- portraits --------------------------------------------------------------------------


def test_portraits_served_at_the_urls_given(sandbox: StandaloneSandbox) -> None:
    sandbox.faults(scopes=PROFILE_SCOPES)
    p = own_profile(sandbox, SANDBOX_USERS["olena"])
    portrait = p["portrait"]
    assert portrait == p["personalData"]["portrait"]
    base = f"{sandbox.url}/_sandbox/portraits/{SANDBOX_USERS['olena']}.svg"
    assert portrait["portrait"] == p["userDetails"]["photoUrl"] == base
    with httpx.Client() as c:
        for name, url in portrait.items():
            size = name.removeprefix("portrait") or "100"
            assert url.startswith(base), name
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
            assert f'width="{size}"' in r.text, name
        for odd in ("abc", "0", "99999"):  # an odd size still gets an SVG
            r = c.get(base, params={"size": odd})
            assert r.status_code == 200 and 'width="100"' in r.text


def test_a_null_name_spreads_and_is_worded_as_graphql_java(sandbox: StandaloneSandbox) -> None:
    """The fault `profile_nulls`: Upwork answering null for non-null names (a live client
    saw it), in graphql-java's words, since Upwork's server is graphql-java."""
    sandbox.faults(scopes=["all"], profile_nulls=["fullName"])
    access = access_for(sandbox, SANDBOX_USERS["alex"])
    query = "{ user { id freelancerProfile { fullName personalData { title } } } }"
    body = run(sandbox, access, query)
    assert body["data"]["user"]["freelancerProfile"] is None
    error = body["errors"][0]
    assert error["extensions"] == {"classification": "NullValueInNonNullableField"}
    assert error["path"] == ["user", "freelancerProfile", "fullName"]
    assert error["message"].startswith(
        "The field at path '/user/freelancerProfile/fullName' was declared as a non null type"
    )
    assert error["message"].endswith(
        "The non-nullable type is 'String' within parent type 'FreelancerProfile'"
    )
    unknown = httpx.patch(f"{sandbox.url}/_sandbox/faults", json={"profile_nulls": ["title"]})
    assert unknown.status_code == 400
