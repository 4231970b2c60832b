"""The main journeys in a real browser: Debian's Chromium driven by Playwright, against the
real server and the sandbox's consent page, in English and Ukrainian, light and dark, on
a desktop and on a 360 px phone. axe-core (from the npm registry, fetched by
scripts/ensure-browser.sh) checks each page for accessibility problems.

Each test saves screenshots under test-artifacts/ (not committed). `make screenshots`
sets SCREENSHOTS_DIR=docs/screenshots to refresh the set shown in the README."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import count
from .test_security_log import cli

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 860}
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail("axe-core is missing: `make test` fetches it (scripts/ensure-browser.sh)")
    return AXE.read_text()


def new_page(chromium: Browser, **context: Any) -> Page:
    context.setdefault("timezone_id", "Europe/Kyiv")
    context.setdefault("viewport", DESKTOP)
    page = chromium.new_context(**context).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.console_errors = errors  # type: ignore[attr-defined]
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, app: RunningApp, upwork_id: str) -> None:
    page.goto(app.url + "/")
    page.click(".upwork-button")
    page.wait_for_selector("text=Authorize application access")
    page.check(f"input[value='{upwork_id}']")
    page.click("button:has-text('Allow')")


def wait_dashboard(page: Page) -> None:
    page.wait_for_selector("[data-field=upwork_id]")
    page.wait_for_load_state("load")  # styles and images too, for what is checked next


def check_accessibility(page: Page, axe_source: str, where: str) -> None:
    """No serious or critical axe-core violation (WCAG 2.1 A/AA rules and best practices)."""
    page.wait_for_load_state("load")  # the whole page, styled, not one parsed in part
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations'],"
        " runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
        " 'best-practice']}})"
    )
    bad = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
    assert not bad, f"{where}: " + json.dumps(bad, ensure_ascii=False, indent=1)


def no_horizontal_scroll(page: Page, where: str) -> None:
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport and width <= viewport["width"], f"{where}: {width}px wide on a phone"


def test_sign_in_and_out(chromium: Browser, running: RunningApp, axe_source: str) -> None:
    page = new_page(chromium)
    page.goto(running.url + "/")
    assert page.is_visible("text=Sandbox mode")
    check_accessibility(page, axe_source, "sign-in page")
    shot(page, "signin")
    sign_in(page, running, SANDBOX_USERS["html"])
    wait_dashboard(page)
    assert page.inner_text("[data-field=upwork_id]") == SANDBOX_USERS["html"]
    assert "<script>" in page.inner_text("[data-field=name]")  # shown as text, not run
    check_accessibility(page, axe_source, "dashboard")
    shot(page, "dashboard")
    page.click(".signout button")
    page.wait_for_selector(".upwork-button")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_keyboard_only_sign_in(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    page.goto(running.url + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")  # skip to the content
    for _ in range(10):
        page.keyboard.press("Tab")
        if "upwork-button" in page.evaluate("document.activeElement.className"):
            break
    else:
        pytest.fail("the Sign in with Upwork button cannot be reached with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Authorize application access")


def test_deny_shows_a_clear_message(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    page.goto(running.url + "/")
    page.click(".upwork-button")
    page.click("button:has-text('Deny')")
    page.wait_for_selector(".alert")
    assert "declined access" in page.inner_text(".alert")
    shot(page, "denied")


def test_language_switch_is_remembered(
    chromium: Browser, running: RunningApp, axe_source: str
) -> None:
    page = new_page(chromium, locale="en-US")
    page.goto(running.url + "/")
    assert page.get_attribute("html", "lang") == "en"
    page.click("button[name=lang][value=uk]")
    page.wait_for_selector("html[lang=uk]")
    assert "Увійти через Upwork" in page.inner_text(".upwork-button")
    sign_in(page, running, SANDBOX_USERS["olena"])
    wait_dashboard(page)
    assert page.get_attribute("html", "lang") == "uk"
    assert "Ваш акаунт Upwork" in page.inner_text("main")
    check_accessibility(page, axe_source, "dashboard (uk)")
    shot(page, "dashboard-uk")
    page.goto(running.url + "/security")
    assert page.get_attribute("html", "lang") == "uk"
    check_accessibility(page, axe_source, "security (uk)")
    page.click("button[name=lang][value=en]")
    page.wait_for_selector("html[lang=en]")
    assert page.url.endswith("/security")  # back on the same page
    assert page.console_errors == []  # type: ignore[attr-defined]

    # A Ukrainian browser gets Ukrainian without asking.
    ukrainian = new_page(chromium, locale="uk-UA")
    ukrainian.goto(running.url + "/")
    assert ukrainian.get_attribute("html", "lang") == "uk"
    shot(ukrainian, "signin-uk")


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_theme_follows_the_system_and_the_toggle_is_remembered(
    chromium: Browser, running: RunningApp, axe_source: str
) -> None:
    light = new_page(chromium, color_scheme="light")
    light.goto(running.url + "/")
    light_bg = background(light)
    dark = new_page(chromium, color_scheme="dark")
    dark.goto(running.url + "/")
    dark_bg = background(dark)
    assert light_bg != dark_bg  # the system setting is followed
    check_accessibility(dark, axe_source, "sign-in page (dark)")

    light.click("[data-theme-toggle]")
    assert light.get_attribute("html", "data-theme") == "dark"
    assert light.get_attribute("[data-theme-toggle]", "aria-pressed") == "true"
    assert background(light) == dark_bg
    light.reload()
    assert light.get_attribute("html", "data-theme") == "dark"  # remembered
    assert background(light) == dark_bg
    sign_in(light, running, SANDBOX_USERS["alex"])
    wait_dashboard(light)
    check_accessibility(light, axe_source, "dashboard (dark)")
    shot(light, "dashboard-dark")
    light.click("[data-theme-toggle]")
    assert background(light) == light_bg
    assert light.console_errors == []  # type: ignore[attr-defined]


def test_phone_layout(chromium: Browser, running: RunningApp, axe_source: str) -> None:
    phone = new_page(chromium, viewport=PHONE, user_agent=IPHONE_UA, is_mobile=True, has_touch=True)
    phone.goto(running.url + "/")
    no_horizontal_scroll(phone, "sign-in")
    sign_in(phone, running, SANDBOX_USERS["alex"])
    wait_dashboard(phone)
    assert cli(running, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0
    for path in ("/", "/security", "/account", "/admin", "/nowhere"):
        phone.goto(running.url + path)
        no_horizontal_scroll(phone, path)
        check_accessibility(phone, axe_source, f"{path} on a phone")
        shot(phone, f"phone{path.replace('/', '-') or '-home'}")
    phone.goto(running.url + "/")
    assert phone.is_visible("nav >> text=Security") and phone.is_visible(".signout button")
    assert phone.console_errors == [  # type: ignore[attr-defined]
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]  # the /nowhere page itself


def test_freelancer_profile_in_both_themes_and_on_a_phone(
    chromium: Browser, app_factory: AppFactory, axe_source: str
) -> None:
    app = app_factory(sandbox_scopes="all")
    for scheme in ("light", "dark"):
        page = new_page(chromium, color_scheme=scheme)
        sign_in(page, app, SANDBOX_USERS["alex"])
        wait_dashboard(page)
        assert page.get_attribute("[data-field=freelancer-state]", "data-state") == "present"
        assert page.inner_text("[data-field=freelancer-rate]") == "$65.00 / hr"
        assert page.is_visible("[data-field=freelancer-jss]")
        assert len(page.query_selector_all("[data-field=freelancer-skills] li")) == 10
        # The photo loads (the page's CSP allows the sandbox's portraits) and is round.
        # Wait for the decode: the element exists before the image has loaded, and a
        # CSP refusal leaves it complete with naturalWidth 0, so this times out then.
        photo = page.wait_for_selector("img.portrait")
        assert photo
        try:
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=photo)
        except PlaywrightTimeout:
            raise AssertionError("portrait did not load") from None
        expect(page.locator("img.portrait")).to_have_css("border-radius", "50%")
        overview = page.inner_text("[data-field=freelancer-overview]")
        assert "What I do best:\n- FastAPI" in overview  # line breaks shown
        check_accessibility(page, axe_source, f"dashboard with a profile ({scheme})")
        shot(page, f"dashboard-profile-{scheme}")
        assert page.console_errors == []  # type: ignore[attr-defined]
        page.context.close()

    phone = new_page(
        chromium,
        viewport=PHONE,
        user_agent=IPHONE_UA,
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
        locale="uk-UA",
    )
    sign_in(phone, app, SANDBOX_USERS["alex"])
    wait_dashboard(phone)
    assert phone.get_attribute("html", "lang") == "uk"
    no_horizontal_scroll(phone, "dashboard with a profile")
    check_accessibility(phone, axe_source, "dashboard with a profile on a phone (uk, dark)")
    shot(phone, "phone-dashboard-profile")


def test_a_markup_overview_is_shown_as_text(
    chromium: Browser, app_factory: AppFactory, axe_source: str
) -> None:
    app = app_factory(sandbox_scopes="all")
    phone = new_page(chromium, viewport=PHONE, user_agent=IPHONE_UA, is_mobile=True, has_touch=True)
    dialogs: list[str] = []
    phone.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(phone, app, SANDBOX_USERS["html"])
    wait_dashboard(phone)
    overview = phone.inner_text("[data-field=freelancer-overview]")
    assert "<script>alert(1)</script>" in overview and "<img src=x onerror=alert(1)>" in overview
    assert len(overview) > 4000
    inside = phone.evaluate(
        "() => document.querySelector('[data-field=freelancer-overview]').children.length"
    )
    assert inside == 0  # nothing but text
    assert phone.evaluate("document.querySelectorAll('script').length") == 1  # app.js only
    assert (
        phone.evaluate(
            "document.querySelectorAll('img:not(.portrait):not([src^=\"/static/\"])').length"
        )
        == 0
    )
    assert phone.evaluate("document.querySelectorAll('iframe, style').length") == 0
    assert "<b>HTML</b>" in phone.inner_text("[data-field=freelancer-skills]")
    no_horizontal_scroll(phone, "dashboard with a 5,000-character overview")
    check_accessibility(phone, axe_source, "dashboard with a markup overview on a phone")
    shot(phone, "phone-dashboard-markup-overview")
    assert dialogs == []


def test_sync_now_shows_progress(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    sign_in(page, running, SANDBOX_USERS["alex"])
    wait_dashboard(page)
    # Record the button's state while the sync runs (sessionStorage outlives the page).
    page.evaluate(
        """() => {
          const form = document.querySelector('.sync-form');
          new MutationObserver(() => {
            const b = form.querySelector('button');
            if (b.getAttribute('aria-busy') === 'true') {
              sessionStorage.setItem('busy', b.textContent.trim());
            }
          }).observe(form, {attributes: true, subtree: true, childList: true});
        }"""
    )
    page.click("text=Sync now")
    page.wait_for_selector(".notice")
    assert "up to date" in page.inner_text(".notice")
    assert page.evaluate("sessionStorage.getItem('busy')") == "Syncing…"


def test_mfa_enable_sign_in_with_code_and_sessions(
    chromium: Browser, running: RunningApp, axe_source: str
) -> None:
    page = new_page(chromium)
    sign_in(page, running, SANDBOX_USERS["olena"])
    wait_dashboard(page)
    page.click("nav >> text=Security")
    page.click("text=Set up two-factor sign-in")
    page.wait_for_selector(".qr svg")
    check_accessibility(page, axe_source, "MFA setup")
    key = page.inner_text("code.key").replace(" ", "")
    page.fill("#confirm-code", pyotp.TOTP(key).now())
    page.click("text=Turn on")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    with page.expect_download() as download:
        page.click("text=Download as .txt")
    saved = Path(download.value.path()).read_text()
    assert all(c.inner_text() in saved for c in page.query_selector_all("#backup-codes code"))
    check_accessibility(page, axe_source, "backup codes")
    shot(page, "backup-codes")

    page.click(".signout button")
    sign_in(page, running, SANDBOX_USERS["olena"])
    page.wait_for_selector("text=Enter your code")
    check_accessibility(page, axe_source, "MFA challenge")
    page.fill("#code", "000000" if pyotp.TOTP(key).now() != "000000" else "111111")
    page.click("text=Verify")
    page.wait_for_selector(".alert")
    page.fill("#code", pyotp.TOTP(key).at(time.time() + 30))
    page.click("text=Verify")
    wait_dashboard(page)

    phone = new_page(chromium, user_agent=IPHONE_UA, viewport=PHONE)
    sign_in(phone, running, SANDBOX_USERS["olena"])
    phone.wait_for_selector("text=Enter your code")
    page.goto(running.url + "/security")
    # The phone waits for its code: no session of its own yet.
    assert "Mobile Safari on iOS" not in page.inner_text("#sessions")
    shot(page, "security")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_revoke_other_sessions_and_admin_block(
    chromium: Browser, running: RunningApp, axe_source: str
) -> None:
    admin = new_page(chromium)
    sign_in(admin, running, SANDBOX_USERS["alex"])
    wait_dashboard(admin)
    other = new_page(chromium)
    sign_in(other, running, SANDBOX_USERS["alex"])
    wait_dashboard(other)
    admin.goto(running.url + "/security")
    assert len(admin.query_selector_all("#sessions li")) >= 2
    admin.click("text=Sign out everywhere else")
    admin.wait_for_selector(".notice")
    other.reload()
    assert other.is_visible(".upwork-button")

    victim = new_page(chromium)
    sign_in(victim, running, SANDBOX_USERS["noemail"])
    wait_dashboard(victim)
    assert cli(running, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0
    admin.goto(running.url + "/admin")
    check_accessibility(admin, axe_source, "admin")
    admin.fill("#q", "Sam")
    admin.press("#q", "Enter")
    admin.wait_for_url("**/admin?q=Sam")
    admin.fill("input[name=reason]", "testing")
    admin.click("button.danger:has-text('Block')")
    admin.wait_for_selector(".notice")
    admin.select_option("#f-type", "user.blocked")
    admin.click("text=Filter")
    admin.wait_for_url("**type=user.blocked**")
    assert len(admin.query_selector_all("table.log tbody tr")) == 1
    shot(admin, "admin")
    victim.reload()
    assert victim.is_visible(".upwork-button")  # signed out at once
    sign_in(victim, running, SANDBOX_USERS["noemail"])
    victim.wait_for_selector(".alert")
    assert "blocked by an administrator" in victim.inner_text(".alert")


def test_account_deletion(chromium: Browser, running: RunningApp, axe_source: str) -> None:
    page = new_page(chromium)
    sign_in(page, running, SANDBOX_USERS["alex"])
    wait_dashboard(page)
    page.click("nav >> text=Account")
    check_accessibility(page, axe_source, "account")
    page.click("text=Delete my account")  # the box is not ticked: the browser asks first
    assert page.url.endswith("/account")
    assert count(running.db_path, "users") == 1
    page.check("#confirm-delete")
    page.click("text=Delete my account")
    page.wait_for_selector(".notice")
    assert "Your account is deleted" in page.inner_text(".notice")
    assert count(running.db_path, "users") == 0
    shot(page, "account-deleted")


SCREENSHOTS = [
    # (file name, language, theme, viewport, page, sandbox user)
    ("signin-en-light-desktop", "en-US", "light", DESKTOP, "/", None),
    ("dashboard-en-light-desktop", "en-US", "light", DESKTOP, "/", "alex"),
    ("dashboard-uk-dark-desktop", "uk-UA", "dark", DESKTOP, "/", "olena"),
    ("security-en-dark-desktop", "en-US", "dark", DESKTOP, "/security", "olena"),
    ("signin-uk-light-phone", "uk-UA", "light", PHONE, "/", None),
    ("dashboard-uk-dark-phone", "uk-UA", "dark", PHONE, "/", "olena"),
    ("dashboard-en-light-phone", "en-US", "light", PHONE, "/", "alex"),
    ("admin-en-light-desktop", "en-US", "light", DESKTOP, "/admin", "olena"),
]


def test_screenshot_set(chromium: Browser, app_factory: AppFactory) -> None:
    """The committed set under docs/screenshots (with SCREENSHOTS_DIR set; else artifacts),
    with a key that grants the whole freelancer profile."""
    running = app_factory(sandbox_scopes="all")
    target = Path(os.environ.get("SCREENSHOTS_DIR") or ARTIFACTS / "set")
    target.mkdir(parents=True, exist_ok=True)
    promoted = False
    for name, locale, scheme, viewport, path, user in SCREENSHOTS:
        page = new_page(chromium, locale=locale, color_scheme=scheme, viewport=viewport)
        if user is not None:
            sign_in(page, running, SANDBOX_USERS[user])
            wait_dashboard(page)
            if user == "olena" and not promoted:
                assert cli(running, "users", "promote", SANDBOX_USERS["olena"]).returncode == 0
                promoted = True
        page.goto(running.url + path)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)
        page.context.close()
        assert (target / f"{name}.png").stat().st_size > 5000
