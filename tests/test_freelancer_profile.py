"""The freelancer's Upwork profile: every value validated (in-process, quick), then synced
from the sandbox over HTTP (in-process too: the app through httpx.ASGITransport) for each
scope case, kept 24 hours, purged and fetched again, with hidden earnings and JSS
respected and one GraphQL request per sync."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from upwork_assistant.upwork.freelancer import (
    OVERVIEW_MAX,
    FreelancerProfile,
    changed_parts,
    freelancer_view,
    https_url,
    money,
    multi_line,
    one_line,
    parse_freelancer,
)
from upwork_assistant.upwork.graphql import null_field, null_fields
from upwork_assistant.upwork.queries import PROFILE, features_of

from .fixtures import SANDBOX_USERS, InProcessApp, InProcessFactory
from .helpers import rows
from .upwork_helpers import (
    JSON,
    age_content,
    audit_events,
    sign_in_inprocess,
    sync_inprocess,
    wait_until_inprocess,
)

HOSTS = ("www.upwork.com", "odesk-prod-portraits.s3.amazonaws.com", "http://127.0.0.1:9999")
TTL = timedelta(hours=24)


def full(**overrides: Any) -> dict[str, Any]:
    """A freelancer profile as Upwork sends it, every part present."""
    data: dict[str, Any] = {
        "fullName": "Alex Morgan",
        "firstName": "Alex",
        "lastName": "Morgan",
        "portrait": {
            "portrait100": "https://www.upwork.com/profile-portraits/c1abc_100",
            "portrait500": "https://www.upwork.com/profile-portraits/c1abc_500",
        },
        "countryDetails": {"name": "Portugal", "twoLetterAbbreviation": "PT"},
        "personalData": {
            "title": "Python developer",
            "description": "First line.\nSecond line.",
            "profileUrl": "https://www.upwork.com/freelancers/~01abc",
            "chargeRate": {"rawValue": "65.00", "currency": "USD", "displayValue": "$65.00"},
            "address": {
                "countryName": "Portugal",
                "cityName": "Lisbon",
                "timezone": "Europe/Lisbon",
            },
        },
        "skills": {"edges": [{"node": {"preferredLabel": "python", "prettyName": "Python"}}]},
        "languages": {
            "edges": [{"node": {"language": {"englishName": "English", "iso639Code": "en"}}}]
        },
        "availability": {"name": "Available", "availabilityDateTime": None},
        "aggregates": {
            "jobSuccessScore": 98.0,
            "topRatedStatus": "top_rated",
            "totalHours": 1520.5,
            "totalHourlyJobs": 31,
            "totalFixedJobs": 12,
            "totalFeedback": 4.95,
            "totalEarnings": {"rawValue": "48250.00", "currency": "USD", "displayValue": "$48K"},
        },
        "educationRecords": [
            {"institutionName": "University of Lisbon", "degree": "MSc", "areaOfStudy": "CS"}
        ],
        "employmentRecords": [
            {"companyName": "Acme", "jobTitle": "Engineer", "startDate": "2019-01-01"}
        ],
        "userPreferences": {"hideEarnings": False, "hideJss": False},
    }
    data.update(overrides)
    return data


def parsed(**overrides: Any) -> FreelancerProfile:
    profile = parse_freelancer(full(**overrides), HOSTS)
    assert profile is not None
    return profile


# ----- validation, value by value (in-process) ------------------------------------------


def test_a_complete_profile_is_kept_whole() -> None:
    p = parsed()
    assert p.invalid == []
    assert (p.full_name, p.title, p.city, p.country, p.country_code) == (
        "Alex Morgan",
        "Python developer",
        "Lisbon",
        "Portugal",
        "PT",
    )
    assert p.rate is not None and p.rate.amount == Decimal("65.00") and p.rate.currency == "USD"
    assert p.skills == ["Python"] and p.languages[0].code == "en"
    assert p.stats is not None and p.stats.job_success_score == 98
    assert p.stats.total_earnings is not None
    assert p.stats.total_earnings.amount == Decimal("48250.00")
    assert p.education[0].school == "University of Lisbon" and p.employment[0].company == "Acme"
    # Stored as JSON: money stays a decimal string, never a float.
    dumped = p.model_dump(mode="json")
    assert dumped["rate"]["amount"] == "65.00"
    assert FreelancerProfile.model_validate(dumped) == p


def test_a_missing_profile_is_none_not_an_error() -> None:
    assert parse_freelancer(None) is None
    assert parse_freelancer("nonsense") is None  # type: ignore[arg-type]


def test_text_is_cleaned_kept_as_text_and_limited() -> None:
    assert one_line("  <b>Bold</b>\x00\u202e title\n\tnext ") == "<b>Bold</b> title next"
    assert one_line(12) == "12" and one_line(None) is None and one_line("  \x07 ") is None
    assert one_line("x" * 500, 200) == "x" * 199 + "…"
    # The overview keeps its line breaks (CRLF too), at most one empty line in a row.
    assert multi_line("a\r\nb\r\n\r\n\r\n\r\nc  d\n") == "a\nb\n\nc d"
    # 5,000 characters with markup and emoji come through unchanged (Upwork's own limit).
    overview = ("<script>alert(1)</script> 👩‍💻 🇺🇦 &amp;\n" * 200)[:5000]
    kept = parsed(personalData={**full()["personalData"], "description": overview}).overview
    assert kept is not None and kept.startswith("<script>alert(1)</script> 👩‍💻 🇺🇦")
    assert len(kept) >= 4900
    assert len(multi_line("y" * (OVERVIEW_MAX + 50)) or "") == OVERVIEW_MAX
    title = parsed(personalData={**full()["personalData"], "title": "<img src=x>\u200b Dev"}).title
    assert title == "<img src=x> Dev"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"rawValue": "65.00", "currency": "USD"}, ("65.00", "USD")),
        ({"rawValue": "0", "currency": "eur"}, ("0", "EUR")),
        ({"rawValue": 40, "currency": "USD"}, ("40", "USD")),
        ({"rawValue": 65.5, "currency": "USD"}, None),  # a float: never money
        ({"rawValue": "1e3", "currency": "USD"}, None),
        ({"rawValue": "-5.00", "currency": "USD"}, None),
        ({"rawValue": "NaN", "currency": "USD"}, None),
        ({"rawValue": "12.5", "currency": "US"}, None),
        ({"rawValue": "12.5", "currency": None}, None),
        ({"rawValue": "9" * 13, "currency": "USD"}, None),
        ("65.00", None),
    ],
)
def test_money_is_a_decimal_and_an_iso_currency(raw: Any, expected: tuple[str, str] | None) -> None:
    value = money(raw)
    if expected is None:
        assert value is None
    else:
        assert value is not None and (str(value.amount), value.currency) == expected


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://www.upwork.com/profile-portraits/c1abc", True),
        ("https://odesk-prod-portraits.s3.amazonaws.com/Users:x:PortraitUrl_100?a=b", True),
        ("http://127.0.0.1:9999/_sandbox/portraits/1.svg?size=100", True),  # the sandbox
        ("http://www.upwork.com/profile-portraits/c1abc", False),  # not https
        ("https://evil.example/x.png", False),
        ("https://www.upwork.com.evil.example/x.png", False),
        ("https://user:pw@www.upwork.com/x.png", False),
        ('https://www.upwork.com/x.png" onerror="alert(1)', False),
        ("javascript:alert(1)", False),
        ("http://127.0.0.1:9998/x.svg", False),  # another port is another origin
        (42, False),
    ],
)
def test_portraits_only_over_https_from_upworks_image_hosts(url: Any, ok: bool) -> None:
    assert (https_url(url, HOSTS) is not None) is ok


def test_wildcard_image_hosts() -> None:
    assert https_url("https://a.cdn.example/x.png", ("*.cdn.example",))
    assert not https_url("https://cdn.example/x.png", ("*.cdn.example",))


def test_bad_values_are_left_out_and_named_without_failing_the_rest() -> None:
    p = parsed(
        portrait={"portrait100": "http://evil.example/x.png", "portrait500": None},
        countryDetails={"name": "Portugal", "twoLetterAbbreviation": "Portugal"},
        personalData={
            **full()["personalData"],
            "profileUrl": "https://evil.example/freelancers/~01",
            "chargeRate": {"rawValue": "sixty", "currency": "USD"},
            "address": {"cityName": "Lisbon", "timezone": "Mars/Olympus_Mons"},
        },
        availability={"name": "Available", "availabilityDateTime": "soon"},
        aggregates={**full()["aggregates"], "jobSuccessScore": 140, "totalEarnings": {"x": 1}},
    )
    assert sorted(p.invalid) == [
        "availability_date",
        "country_code",
        "job_success_score",
        "portrait_100",
        "profile_url",
        "rate",
        "timezone",
        "total_earnings",
    ]
    assert p.rate is None and p.timezone is None and p.profile_url is None
    assert p.title == "Python developer" and p.skills == ["Python"]  # the rest is kept


def test_names_and_numbers() -> None:
    p = parsed(fullName=" Alex\u202e  Morgan ", firstName="<i>Alex</i>", lastName=None)
    assert (p.full_name, p.first_name, p.last_name) == ("Alex Morgan", "<i>Alex</i>", None)
    odd = {
        "jobSuccessScore": "97.4",  # numbers as strings are read
        "totalHours": "abc",
        "totalHourlyJobs": -1,
        "totalFixedJobs": 2.5,
        "totalFeedback": 7,  # a feedback score is 0..5
        "topRatedStatus": "  top_rated\n",
    }
    stats = parsed(aggregates=odd).stats
    assert stats is not None
    assert stats.job_success_score == 97 and stats.top_rated_status == "top_rated"
    assert stats.total_hours is None and stats.total_hourly_jobs is None
    assert stats.total_fixed_jobs is None and stats.total_feedback is None
    assert parsed(aggregates={}).stats is None
    assert (
        parsed(countryDetails={"name": "Portugal", "twoLetterAbbreviation": "pt"}).country_code
        == "PT"
    )


def test_states_upwork_names_are_kept_as_text_even_when_unknown() -> None:
    p = parsed(
        availability={"name": "On a sabbatical", "availabilityDateTime": "2026-12-11T00:00:00Z"},
        aggregates={**full()["aggregates"], "topRatedStatus": "expert_vetted_2027"},
    )
    assert p.availability is not None and p.availability.status == "On a sabbatical"
    assert p.availability.available_from == datetime(2026, 12, 11, tzinfo=UTC)
    assert p.stats is not None and p.stats.top_rated_status == "expert_vetted_2027"


def test_hidden_earnings_and_jss_are_not_kept() -> None:
    p = parsed(userPreferences={"hideEarnings": True, "hideJss": True})
    assert p.stats is not None
    assert p.stats.total_earnings is None and p.stats.job_success_score is None
    assert "48250" not in json.dumps(p.model_dump(mode="json"))
    view = freelancer_view((datetime.now(UTC), True, p.model_dump(mode="json")), [], TTL)
    assert view.hidden == ["earnings", "job_success_score"]


def test_lists_are_deduplicated_and_capped() -> None:
    edges = [{"node": {"preferredLabel": f"s{i}", "prettyName": f"S{i % 150}"}} for i in range(300)]
    edges.append({"node": {"preferredLabel": "x", "prettyName": "s1"}})  # same as S1, by case
    p = parsed(skills={"edges": edges})
    assert len(p.skills) == 100 and len(set(map(str.casefold, p.skills))) == 100
    langs = [{"node": {"language": {"englishName": "English", "iso639Code": "EN!"}}}] * 3
    p = parsed(languages={"edges": langs}, educationRecords=[{"degree": "no school"}])
    assert [(lang.name, lang.code) for lang in p.languages] == [("English", None)]
    assert p.education == []


def test_title_rate_and_skills_changes_are_named() -> None:
    before = parsed()
    after = parsed(
        personalData={
            **full()["personalData"],
            "title": "Senior Python developer",
            "chargeRate": {"rawValue": "70.00", "currency": "USD"},
        },
        skills={"edges": [{"node": {"preferredLabel": "go", "prettyName": "Go"}}]},
    )
    assert changed_parts(before, after) == ["title", "rate", "skills"]
    assert changed_parts(before, parsed()) == []
    assert changed_parts(None, after) == []  # a first fetch is not a change


def test_views_say_why_a_profile_is_missing() -> None:
    assert freelancer_view(None, ["freelancer_profile"], TTL).state == "not_granted"
    assert freelancer_view(None, [], TTL).state == "not_fetched"
    now = datetime.now(UTC)
    none = freelancer_view((now, False, None), [], TTL)
    assert none.state == "none" and none.expires_at == now + TTL
    present = freelancer_view((now, True, parsed().model_dump(mode="json")), ["country"], TTL)
    assert present.state == "present" and present.unavailable == ["country"]


def test_refused_fields_name_the_parts_they_take_away() -> None:
    assert features_of(["Money.currency"]) == ["earnings", "rate"]
    assert features_of(["CurrentUser.freelancerProfile", "FreelancerProfile.fullName"]) == [
        "freelancer_profile"
    ]
    assert features_of(["FreelancerProfile.countryDetails"]) == ["country"]
    # The interface's spelling (User.email) means the concrete type's field too.
    assert features_of(["User.email"]) == ["email"]
    without = PROFILE.without(["User.email", "FreelancerProfile.countryDetails"])
    assert without is not None
    assert "email" not in without.render() and "countryDetails" not in without.render()
    assert PROFILE.without(["User.id"]) is None  # the account cannot be made without it


# ----- against the sandbox, over HTTP ---------------------------------------------------


async def stats(app: InProcessApp) -> dict[str, int]:
    return dict((await app.client().get("/sandbox/upwork/_sandbox/stats")).json())


def profile_row(app: InProcessApp, user_id: str) -> tuple[Any, ...] | None:
    found = rows(
        app.db_path,
        "SELECT fetched_at, has_profile, data FROM freelancer_profiles WHERE user_id=?",
        user_id,
    )
    return tuple(found[0]) if found else None


async def freelancer(browser: Any) -> dict[str, Any]:
    return dict((await browser.get("/api/upwork/profile", headers=JSON)).json()["freelancer"])


@pytest.mark.inprocess
async def test_every_scope_one_request_and_the_whole_profile(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    assert (await stats(app))["graphql_requests"] == 1  # identity and profile together
    f = await freelancer(browser)
    assert f["state"] == "present" and f["unavailable"] == [] and f["hidden"] == []
    p = f["profile"]
    assert p["title"] and p["overview"] and "\n" in p["overview"]
    assert p["rate"]["currency"] == "USD" and p["rate"]["amount"] == "65.00"
    assert len(p["skills"]) >= 8 and p["timezone"] == "Europe/Lisbon"
    assert p["stats"]["job_success_score"] == 98 and p["stats"]["total_earnings"]
    assert p["portrait_500"].startswith(app.url + "/sandbox/upwork/_sandbox/portraits/")
    assert p["profile_url"].startswith("https://www.upwork.com/freelancers/~01")
    assert datetime.fromisoformat(f["expires_at"]) - datetime.fromisoformat(f["fetched_at"]) == (
        timedelta(hours=24)
    )
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await stats(app))["graphql_requests"] == 2  # a sync: one more request


@pytest.mark.inprocess
async def test_a_key_without_the_profile_permission_still_signs_in(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(scopes=["common-entities"])  # a key with only what every key has
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    assert (await browser.get("/api/auth/me", headers=JSON)).json()["name"] == "Alex M."
    f = await freelancer(browser)
    assert f["state"] == "not_granted" and "freelancer_profile" in f["unavailable"]
    assert f["profile"] is None and profile_row(running, user_id) is None
    before = (await stats(running))["graphql_requests"]
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await stats(running))["graphql_requests"] == before + 1  # the refusal is remembered
    page = (await browser.get("/")).text
    assert "Freelancer Profile permission" in page


@pytest.mark.inprocess
async def test_country_refused_alone_degrades_one_part(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(
        scopes=["common-entities", "user-email", "organization", "freelancer-profile"]
    )
    browser, _user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    assert (await stats(running))["graphql_requests"] == 2  # asked everything, then without country
    f = await freelancer(browser)
    assert f["state"] == "present" and f["unavailable"] == ["country"]
    assert f["profile"]["country_code"] is None and f["profile"]["timezone"] == "Europe/Kyiv"
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await stats(running))["graphql_requests"] == 3  # the sync: one request


@pytest.mark.inprocess
async def test_hidden_earnings_and_jss_never_reach_the_database(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["noemail"])  # Sam hides both
    f = await freelancer(browser)
    assert f["hidden"] == ["earnings", "job_success_score"]
    assert f["profile"]["stats"]["total_earnings"] is None
    assert f["profile"]["stats"]["job_success_score"] is None
    row = profile_row(app, user_id)
    assert row is not None
    stored = json.loads(row[2]) if isinstance(row[2], str) else row[2]
    assert (
        stored["stats"]["total_earnings"] is None and stored["stats"]["job_success_score"] is None
    )
    page = (await browser.get("/")).text
    assert 'data-field="freelancer-earnings"' not in page
    assert 'data-field="freelancer-jss"' not in page


@pytest.mark.inprocess
async def test_a_clients_account_without_a_freelancer_profile(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["client"])
    f = await freelancer(browser)
    assert f["state"] == "none" and f["profile"] is None and f["unavailable"] == []
    row = profile_row(app, user_id)
    assert row is not None and not row[1]
    assert (await browser.get("/")).status_code == 200


@pytest.mark.inprocess
async def test_the_long_html_overview_is_kept_as_text(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["html"])
    overview = (await freelancer(browser))["profile"]["overview"]
    assert len(overview) > 4500 and "<script>" in overview and "👩‍💻" in overview
    page = (await browser.get("/")).text
    assert "<script>alert" not in page and "&lt;script&gt;" in page


@pytest.mark.inprocess
async def test_changes_of_title_rate_and_skills_are_recorded_without_values(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    patched = dict((await browser.get("/api/upwork/profile", headers=JSON)).json())
    assert patched["freelancer"]["state"] == "present"
    await app.faults(
        user_patch={
            "freelancerProfile": full(
                personalData={
                    **full()["personalData"],
                    "title": "Staff engineer, secret title",
                    "chargeRate": {"rawValue": "123.00", "currency": "USD"},
                }
            )
        }
    )
    body = (await sync_inprocess(browser)).json()
    assert body["freelancer"]["profile"]["title"] == "Staff engineer, secret title"
    assert {"title", "rate", "skills"} <= set(body["last_sync"]["changed"])
    events = audit_events(app.db_path, "profile.updated")
    assert events and {"title", "rate", "skills"} <= set(events[-1]["fields"])
    everything = json.dumps(events)
    assert "secret title" not in everything and "123.00" not in everything


@pytest.mark.inprocess
async def test_unusable_values_do_not_fail_the_sync(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    await app.faults(
        user_patch={
            "freelancerProfile": full(
                portrait={"portrait100": "https://evil.example/x.png", "portrait500": None},
                personalData={
                    **full()["personalData"],
                    "chargeRate": {"rawValue": 65.5, "currency": "USD"},
                },
            )
        }
    )
    body = (await sync_inprocess(browser)).json()
    p = body["freelancer"]["profile"]
    assert p["rate"] is None and p["portrait_100"] is None and p["title"] == "Python developer"
    assert sorted(p["invalid"]) == ["portrait_100", "rate"]
    assert "evil.example" not in (await browser.get("/")).text


@pytest.mark.inprocess
async def test_losing_the_permission_deletes_the_kept_profile(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    assert profile_row(app, user_id) is not None
    await app.faults(scopes=["common-entities"])
    await browser.sign_in(SANDBOX_USERS["alex"])  # sign-in asks everything again
    assert profile_row(app, user_id) is None
    assert (await freelancer(browser))["state"] == "not_granted"


@pytest.mark.inprocess
async def test_profile_purged_after_24_hours_and_fetched_again_on_use(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(
        sandbox_scopes="all", worker_in_serve=None, worker_interval_seconds=0.2
    )
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["olena"])
    assert profile_row(app, user_id) is not None
    requests_before = (await stats(app))["graphql_requests"]
    # In a thread: the worker runs on this event loop, and on SQLite a write here that
    # waited for the worker's transaction would stop the loop the worker commits on.
    await asyncio.to_thread(age_content, app, user_id, 25)
    # The worker inside serve deletes it: nobody asked, nothing fetched.
    await wait_until_inprocess(lambda: profile_row(app, user_id) is None)
    assert (await stats(app))["graphql_requests"] == requests_before
    # The user comes back: fetched again, once, in the background.
    assert (await freelancer(browser))["state"] == "not_fetched"
    await wait_until_inprocess(lambda: profile_row(app, user_id) is not None)
    assert (await freelancer(browser))["state"] == "present"
    assert (await stats(app))["graphql_requests"] == requests_before + 1


def test_non_null_fields_upwork_answers_null_are_recognised() -> None:
    java = (
        "The field at path '/user/freelancerProfile/fullName' was declared as a non null "
        "type, but the code involved in retrieving data has wrongly returned a null value.  "
        "The graphql specification requires that the parent field be set to null, or if "
        "that is non nullable that it bubble up null to its parent and so on. The "
        "non-nullable type is 'String' within parent type 'FreelancerProfile'"
    )
    assert null_field(java) == "FreelancerProfile.fullName"
    core = "Cannot return null for non-nullable field FreelancerProfile.lastName."
    assert null_field(core) == "FreelancerProfile.lastName"
    assert null_field("Internal error") is None
    assert null_fields([{"message": java}, {"message": core}]) == [
        "FreelancerProfile.fullName",
        "FreelancerProfile.lastName",
    ]
    assert null_fields([{"message": java}, {"message": "something else"}]) is None


@pytest.mark.inprocess
async def test_a_null_in_a_non_null_name_does_not_lose_the_profile(
    inprocess_factory: InProcessFactory,
) -> None:
    """A live client saw fullName/firstName/lastName come back null although the schema
    says String!: the null takes `freelancerProfile` with it. The product asks again
    without them instead of taking the account for one without a profile."""
    app = await inprocess_factory(sandbox_scopes="all")
    await app.faults(profile_nulls=["fullName", "firstName", "lastName"])
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    assert (await stats(app))["graphql_requests"] == 2
    f = await freelancer(browser)
    assert f["state"] == "present" and f["profile"]["title"]
    assert f["profile"]["full_name"] is None and f["unavailable"] == []
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await freelancer(browser))["state"] == "present"
    assert (await stats(app))["graphql_requests"] == 3  # the nulls are remembered: one request
