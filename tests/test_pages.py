"""The pages, in-process (the app through httpx.ASGITransport, as real HTTP would reach it):
language and theme choice, time zones, the dashboard's sync, account deletion, the admin
section and the error pages. The browser tests (test_browser.py) walk the same pages in
Chromium over real HTTP."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from upwork_assistant.web.i18n import negotiate, parse_accept_language

from .fixtures import SANDBOX_USERS, InProcessApp, InProcessFactory
from .helpers import AsyncBrowser, count, rows
from .test_mfa import code_at, enable_mfa_inprocess
from .test_security_log import cli
from .upwork_helpers import JSON, expire_access, sign_in_inprocess, stored_tokens

#: Nothing here needs a socket: the app is reached in-process (tests/fixtures.py).
pytestmark = pytest.mark.inprocess

UK = {"Accept-Language": "uk-UA,uk;q=0.9,en;q=0.5"}


def form(browser: AsyncBrowser, page: httpx.Response) -> str:
    """The CSRF token of the page's forms."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def text(page: httpx.Response) -> str:
    return html.unescape(page.text)


@pytest.mark.parametrize(
    ("header", "chosen", "expected"),
    [
        (None, None, "en"),
        ("uk", None, "uk"),
        ("uk-UA,uk;q=0.9,en-US;q=0.8", None, "uk"),
        ("de-DE,uk;q=0.5,en;q=0.4", None, "uk"),
        ("en;q=0.4,uk;q=0.8", None, "uk"),
        ("uk;q=0,en", None, "en"),
        ("fr,de", None, "en"),
        ("*", None, "en"),
        ("uk;q=abc", None, "en"),
        ("en", "uk", "uk"),
        ("uk", "en", "en"),
        ("uk", "xx", "uk"),
        (";;;,,q=1," * 200, None, "en"),
    ],
)
def test_language_negotiation(header: str | None, chosen: str | None, expected: str) -> None:
    assert negotiate(chosen, header) == expected


def test_accept_language_order() -> None:
    assert parse_accept_language("en;q=0.5, uk, de;q=0.7") == ["uk", "de", "en"]


async def test_accept_language_and_the_remembered_choice(inprocess: InProcessApp) -> None:
    running = inprocess
    browser = running.browser()
    english = await browser.get("/")
    assert '<html lang="en"' in english.text and "Sign in with Upwork" in english.text
    assert english.headers["content-language"] == "en"
    assert "Accept-Language" in english.headers["vary"]

    ukrainian = await browser.get("/", headers=UK)
    assert '<html lang="uk"' in ukrainian.text
    assert "Увійти через Upwork" in text(ukrainian)
    assert "Sign in with Upwork" not in text(ukrainian)

    # The person picks English on a Ukrainian browser: remembered for a year.
    r = await browser.post("/preferences", data={"lang": "en", "next": "/?x=1"}, headers=UK)
    assert r.status_code == 303 and r.headers["location"] == "/?x=1"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("lang="))
    assert "Max-Age=31536000" in cookie and "SameSite=lax" in cookie
    assert '<html lang="en"' in (await browser.get("/", headers=UK)).text

    # Unknown languages, open redirects and cross-site posts change nothing.
    r = await browser.post("/preferences", data={"lang": "xx", "next": "//evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert not any(c.startswith("lang=") for c in r.headers.get_list("set-cookie"))
    cross = await running.browser().post(
        "/preferences", data={"lang": "uk"}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 303 and cross.headers["location"].startswith("/?error=forbidden")
    assert not any(c.startswith("lang=") for c in cross.headers.get_list("set-cookie"))
    fetched = await running.browser().post(
        "/preferences", data={"lang": "uk"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert not any(c.startswith("lang=") for c in fetched.headers.get_list("set-cookie"))


async def test_theme_follows_the_system_until_chosen(inprocess: InProcessApp) -> None:
    browser = inprocess.browser()
    assert "data-theme=" not in (await browser.get("/")).text  # the CSS follows the system
    r = await browser.post("/preferences", data={"theme": "toggle", "next": "/"})
    assert r.status_code == 303
    assert '<html lang="en" data-theme="dark"' in (await browser.get("/")).text
    await browser.post("/preferences", data={"theme": "toggle", "next": "/"})
    assert 'data-theme="light"' in (await browser.get("/")).text
    await browser.post("/preferences", data={"theme": "system", "next": "/"})
    assert "data-theme=" not in (await browser.get("/")).text
    browser.client.cookies.set("theme", "<script>")
    assert "data-theme=" not in (await browser.get("/")).text


async def test_dates_follow_language_and_time_zone(inprocess: InProcessApp) -> None:
    browser, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["olena"])
    utc = await browser.get("/security")
    assert re.search(r"\d{1,2}:\d{2}\s(AM|PM) UTC", text(utc))  # zone not known yet: said so
    browser.client.cookies.set("tz", "Asia/Tokyo")
    browser.client.cookies.set("lang", "uk")
    tokyo = text(await browser.get("/security"))
    assert 'data-tz="Asia/Tokyo"' in tokyo
    stamp = re.search(r'<time datetime="([^"]+)" data-format="datetime"[^>]*>([^<]+)<', tokyo)
    assert stamp
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromisoformat(stamp.group(1)).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"{local:%H:%M}" in stamp.group(2)  # 24-hour Ukrainian time, Tokyo's hour
    assert "\u0440." in stamp.group(2)  # the Ukrainian date ends in "\u0440." (year)
    for bad in ("../../etc/passwd", "Not/AZone", "x" * 200, "/etc/localtime"):
        browser.client.cookies.set("tz", bad)
        page = await browser.get("/security")
        assert page.status_code == 200 and 'data-tz=""' in page.text


async def test_dashboard_shows_profile_connection_sync_and_events(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(scopes=["all"])  # a key with every scope the product asks for
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    page = text(await browser.get("/"))
    assert "Alex M." in page and "alex.morgan@example.com" in page
    org = rows(running.db_path, "SELECT organization_id FROM upwork_connections")[0][0]
    assert org and org in page
    assert "Connected" in page and "Access token valid until" in page
    assert "Signed in" in page and "Account created" in page  # recent security events
    assert "Sync now" in page

    r = await browser.post(
        "/profile/sync", data={"csrf_token": form(browser, await browser.get("/"))}
    )
    assert r.status_code == 303 and r.headers["location"] == "/?notice=synced"
    assert "Your profile is up to date with Upwork." in text(
        await browser.get(r.headers["location"])
    )
    assert rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='manual'") == [
        (1,)
    ]

    # Without the CSRF token nothing happens.
    forged = await browser.post("/profile/sync", data={})
    assert forged.status_code == 303 and "error=csrf_failed" in forged.headers["location"]
    assert rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='manual'") == [
        (1,)
    ]


async def test_sync_now_when_upwork_access_is_gone(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    token = form(browser, await browser.get("/"))
    _, refresh = stored_tokens(running, user_id)
    running.sandbox_state.refresh_tokens[refresh].revoked = True
    expire_access(running.db_path, user_id)
    r = await browser.post("/profile/sync", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/?error=upwork_reauth_required"
    page = text(await browser.get("/"))
    assert "Needs reconnecting" in page and "Reconnect Upwork" in page
    assert re.search(r"<button[^>]*disabled", page)  # Sync now waits for the reconnect


async def test_sync_now_rate_limit_is_a_message(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(profile_sync_rate_limit="1/minute")
    browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    token = form(browser, await browser.get("/"))
    assert (
        (await browser.post("/profile/sync", data={"csrf_token": token}))
        .headers["location"]
        .endswith("notice=synced")
    )
    again = await browser.post("/profile/sync", data={"csrf_token": token})
    assert again.headers["location"] == "/?error=sync_rate_limited"
    assert "Please wait a minute" in text(await browser.get(again.headers["location"]))


async def test_account_deletion_page(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    secret, _ = await enable_mfa_inprocess(browser)
    page = await browser.get("/account")
    assert page.status_code == 200 and 'name="code"' in page.text
    token = form(browser, page)

    unconfirmed = await browser.post("/account/delete", data={"csrf_token": token, "code": "1"})
    assert unconfirmed.headers["location"] == "/account?error=confirm_required"
    no_code = await browser.post("/account/delete", data={"csrf_token": token, "confirm": "yes"})
    assert no_code.headers["location"] == "/account?error=mfa_code_required"
    wrong = await browser.post(
        "/account/delete", data={"csrf_token": token, "confirm": "yes", "code": "000000"}
    )
    assert wrong.headers["location"] == "/account?error=mfa_invalid_code"
    assert "That code is not right" in text(await browser.get(wrong.headers["location"]))
    assert count(running.db_path, "users") == 1

    done = await browser.post(
        "/account/delete",
        data={"csrf_token": token, "confirm": "yes", "code": code_at(secret, 1)},
    )
    assert done.status_code == 303 and done.headers["location"] == "/?notice=account_deleted"
    assert count(running.db_path, "users") == 0
    landing = text(await browser.get(done.headers["location"]))
    assert "Your account is deleted" in landing and "Sign in with Upwork" in landing
    assert (await browser.get("/api/auth/me", headers=JSON)).status_code == 401


async def test_account_deletion_without_mfa(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    page = await browser.get("/account")
    assert 'name="code"' not in page.text
    token = form(browser, page)
    done = await browser.post("/account/delete", data={"csrf_token": token, "confirm": "yes"})
    assert done.headers["location"] == "/?notice=account_deleted"
    assert count(running.db_path, "users") == 0


async def test_admin_page_stats_search_and_log_filters(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(scopes=["all"])  # search finds users by email too
    admin, admin_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    _, olena_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    assert (await admin.get("/admin")).headers["location"] == "/?error=forbidden"
    assert cli(running, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0

    page = await admin.get("/admin")
    assert page.status_code == 200
    body = text(page)
    stats = re.findall(r'<span class="stat">([\d\s,.\u00a0]+)</span>\s*([^<]+)<', body)
    assert ("2", "users") in [(n.strip(), label.strip()) for n, label in stats]
    assert "Олена К." in body and "Alex M." in body  # noqa: RUF001

    found = text(await admin.get("/admin", params={"q": "olena"}))
    users_part = found.split('id="log"')[0].split('class="users"')[1]
    assert "Олена К." in found and "Alex M." not in users_part  # noqa: RUF001

    only_olena = text(
        await admin.get("/admin", params={"user_id": olena_id, "type": "signin.succeeded"})
    )
    log = only_olena.split('id="log"')[1]
    assert log.count('data-event="signin.succeeded"') == 1
    assert 'data-event="account.created"' not in log
    future = text(await admin.get("/admin", params={"since": "2999-01-01"}))
    assert "No events match." in future
    junk = await admin.get(
        "/admin",
        params={"since": "yesterday", "until": "13/13/13", "before": "x" * 40, "type": "?"},
    )
    assert junk.status_code == 200
    # The admin's own row has no Block button: one button, for the other user.
    assert f"/admin/users/{admin_id}/block" not in body
    assert body.count('class="danger">Block</button>') == 1


@pytest.mark.parametrize("lang", ["en", "uk"])
async def test_error_pages_are_styled_for_browsers_and_json_for_the_api(
    inprocess: InProcessApp, lang: str
) -> None:
    running = inprocess
    browser = running.browser()
    browser.client.cookies.set("lang", lang)
    missing = await browser.get("/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert f'<html lang="{lang}"' in missing.text
    assert ("Page not found" if lang == "en" else "Сторінку не знайдено") in text(missing)
    assert "/static/app.css" in missing.text

    api = await browser.get("/api/no-such-thing")
    assert api.status_code == 404 and api.headers["content-type"] == "application/json"
    assert (await running.api().get("/no-such-page")).json()["error"] == "not_found"


async def test_429_and_500_pages(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(signin_rate_limit="2/minute")
    fastapi_app: FastAPI = app.app

    @fastapi_app.get("/boom-for-test")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("secret detail that must not show")

    browser = app.browser()
    for _ in range(2):
        await browser.get("/api/auth/upwork/authorize", params={"redirect": "true"})
    limited = await browser.get("/api/auth/upwork/authorize", params={"redirect": "true"})
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    retry = int(limited.headers["retry-after"])
    assert f"You can try again in {retry} second" in text(limited)
    # JSON for the API
    assert (await app.api().get("/api/auth/upwork/authorize")).status_code == 429

    broken = await browser.get("/boom-for-test", headers=UK)
    assert broken.status_code == 500
    assert "secret detail" not in broken.text and "Traceback" not in broken.text
    assert '<html lang="uk"' in broken.text and "/static/app.css" in broken.text


async def test_pages_send_no_inline_script_or_style(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    assert cli(running, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0
    token = form(browser, await browser.get("/"))
    setup = await browser.post("/security/mfa/setup", data={"csrf_token": token})
    pages = [await browser.get(p) for p in ("/", "/security", "/account", "/admin", "/nope")]
    pages += [setup, await running.browser().get("/")]
    for page in pages:
        ours = page.text.replace('<script src="/static/app.js" defer></script>', "")
        ours = ours.replace('<script src="/static/passkeys.js" defer></script>', "")
        assert "<script>" not in ours and "<script " not in ours
        assert " style=" not in page.text and "<style" not in page.text
        assert "onclick" not in page.text.lower()


# ----- the freelancer profile on the dashboard ------------------------------------------

PROFILE_USERS = {
    "sam": "1717171717171717003",  # Sam Private: hides earnings and Job Success Score
    "client": "1717171717171717005",  # Chris Hale: a client's account, no freelancer profile
}


def field(page: str, name: str) -> str | None:
    """The markup inside the first element with ``data-field=name`` (None: no such element)."""
    match = re.search(rf'<(\w+)[^>]*data-field="{name}"[^>]*>(.*?)</\1>', page, re.S)
    return match.group(2) if match else None


async def dashboard(app: InProcessApp, upwork_id: str, **headers: str) -> str:
    browser, _ = await sign_in_inprocess(app, upwork_id)
    page = await browser.get("/", headers=headers)
    assert page.status_code == 200, page.text
    return page.text


@pytest.fixture
async def scoped(inprocess_factory: InProcessFactory) -> InProcessApp:
    """A key with every scope, the Freelancer Profile permission among them."""
    return await inprocess_factory(sandbox_scopes="all")


async def test_dashboard_shows_the_freelancer_profile(scoped: InProcessApp) -> None:
    page = await dashboard(scoped, SANDBOX_USERS["alex"])
    assert 'data-state="present"' in page
    assert field(page, "freelancer-title") == "Full-stack Python developer (FastAPI, PostgreSQL)"
    assert html.unescape(field(page, "freelancer-rate") or "") == "$65.00 / hr"
    skills = field(page, "freelancer-skills") or ""
    assert re.findall(r"<li>([^<]+)</li>", skills)[:3] == ["Python", "FastAPI", "PostgreSQL"]
    overview = html.unescape(field(page, "freelancer-overview") or "")
    assert overview.startswith("Hi, I'm Alex.")
    assert "What I do best:\n- FastAPI and Django services" in overview  # line breaks kept
    assert "<br" not in (field(page, "freelancer-overview") or "")
    assert field(page, "freelancer-jss") == "98% Job Success"
    assert field(page, "freelancer-badge") == "Top Rated"
    assert html.unescape(field(page, "freelancer-earnings") or "").startswith("$48,250")
    assert field(page, "freelancer-hours") == "3,412.5"
    assert field(page, "freelancer-jobs") == "58"
    assert "Lisbon, Portugal" in (field(page, "freelancer-location") or "")
    local = field(page, "freelancer-local-time") or ""
    assert re.fullmatch(r"\d{1,2}:\d{2}\s(AM|PM) local time \(Europe/Lisbon\)", local), local
    assert "English, Spanish" in (field(page, "freelancer-languages") or "")
    assert "Tidewater Analytics" in (field(page, "freelancer-employment") or "")
    assert "Universidade de Lisboa" in (field(page, "freelancer-education") or "")
    link = re.search(r'<a [^>]*data-field="freelancer-link"[^>]*>', page)
    assert link and 'rel="noopener noreferrer"' in link.group(0)
    assert re.search(r'<img class="portrait" src="[^"]+" width="96" height="96" alt="', page)
    assert "Kept for 24 hours, as Upwork" in html.unescape(page)
    assert 'data-field="freelancer-unavailable"' not in page

    # In Ukrainian: the labels, the badge, plurals and the country's name.
    uk = html.unescape(await dashboard(scoped, SANDBOX_USERS["alex"], **UK))
    assert "Успішність робіт 98%" in uk and ">Top Rated<" in uk
    assert "Lisbon, Португалія" in uk and "Англійська, Іспанська" in uk
    assert "Навички" in uk and "Переглянути на Upwork" in uk and "$65.00 / год" in uk
    assert re.search(r"58</span>\s*робіт", uk) and "3\xa0412,5" in uk  # plural, number


async def test_hidden_earnings_and_job_success_score_are_not_on_the_page(
    scoped: InProcessApp,
) -> None:
    page = await dashboard(scoped, PROFILE_USERS["sam"])
    assert 'data-state="present"' in page
    assert field(page, "freelancer-title") == "Bookkeeping and QuickBooks clean-up"
    assert field(page, "freelancer-jss") is None and field(page, "freelancer-earnings") is None
    assert "Job Success" not in page and "21,900" not in page and "21900" not in page
    assert "87%" not in page


async def test_a_key_without_the_freelancer_profile_permission(
    inprocess_factory: InProcessFactory,
) -> None:
    running = await inprocess_factory(sandbox_scopes="common-entities")  # a fresh key's scopes
    page = html.unescape(await dashboard(running, SANDBOX_USERS["alex"]))
    assert 'data-state="not_granted"' in page
    assert (
        "This installation's Upwork key does not include the Freelancer Profile permission, "
        "so your Upwork profile cannot be shown." in page
    )
    assert 'data-field="freelancer-title"' not in page
    uk = html.unescape(await dashboard(running, SANDBOX_USERS["alex"], **UK))
    assert "не містить дозволу Freelancer Profile" in uk


async def test_a_client_account_has_no_freelancer_profile(scoped: InProcessApp) -> None:
    page = html.unescape(await dashboard(scoped, PROFILE_USERS["client"]))
    assert 'data-state="none"' in page
    note = re.search(r'<p class="info" data-field="freelancer-note">([^<]+)</p>', page)
    assert note and "has no freelancer profile" in note.group(1)
    assert 'class="alert"' not in page and "freelancer-title" not in page


async def test_the_overview_is_text_not_markup(scoped: InProcessApp) -> None:
    page = await dashboard(scoped, SANDBOX_USERS["html"])
    overview = field(page, "freelancer-overview") or ""
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in overview
    assert "&lt;img src=x onerror=alert(1)&gt;" in overview
    assert "<script>alert" not in page and "<img src=x" not in page and "<iframe" not in page
    assert "&lt;b&gt;HTML&lt;/b&gt;" in (field(page, "freelancer-skills") or "")
    assert "&lt;script&gt;" in (field(page, "freelancer-title") or "")
    assert field(page, "freelancer-badge") == "Rising Talent"
    assert field(page, "freelancer-jss") is None  # no score yet


async def test_parts_the_key_refuses_are_named(inprocess_factory: InProcessFactory) -> None:
    running = await inprocess_factory(sandbox_scopes="common-entities,freelancer-profile")
    page = html.unescape(await dashboard(running, SANDBOX_USERS["alex"]))
    assert 'data-state="present"' in page
    assert 'data-field="freelancer-title"' in page
    line = re.search(r'<p class="notice" data-field="freelancer-unavailable">([^<]+)</p>', page)
    assert line and line.group(1).endswith("so they are not shown: country.")
    uk = html.unescape(await dashboard(running, SANDBOX_USERS["alex"], **UK))
    assert "тож їх не показано: країна." in uk
