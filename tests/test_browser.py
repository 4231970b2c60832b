"""The main journeys in a real browser: Debian's Chromium driven by Playwright, against the
real server and the sandbox's consent page. Each test saves a screenshot under
test-artifacts/ (not committed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .conftest import SANDBOX_USERS, RunningApp
from .test_security_log import cli

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (scripts/ensure-chromium.sh)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def new_page(chromium: Browser, **context: object) -> Page:
    page = chromium.new_context(**context).new_page()  # type: ignore[arg-type]
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
    page.click("text=Sign in with Upwork")
    page.wait_for_selector("text=Authorize application access")
    page.check(f"input[value='{upwork_id}']")
    page.click("button:has-text('Allow')")


def test_sign_in_and_out(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    page.goto(running.url + "/")
    assert page.is_visible("text=Sandbox mode")
    shot(page, "signin")
    sign_in(page, running, SANDBOX_USERS["html"])
    page.wait_for_selector("text=Your Upwork account")
    assert page.inner_text("[data-field=upwork_id]") == SANDBOX_USERS["html"]
    assert "<script>" in page.inner_text("[data-field=name]")  # shown as text, not run
    shot(page, "dashboard")
    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=Sign in with Upwork")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_deny_shows_a_clear_message(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    page.goto(running.url + "/")
    page.click("text=Sign in with Upwork")
    page.click("button:has-text('Deny')")
    page.wait_for_selector(".alert")
    assert "declined access" in page.inner_text(".alert")
    shot(page, "denied")


def test_mfa_enable_sign_in_with_code_and_sessions(chromium: Browser, running: RunningApp) -> None:
    page = new_page(chromium)
    sign_in(page, running, SANDBOX_USERS["olena"])
    page.wait_for_selector("text=Your Upwork account")
    page.click("nav >> text=Security")
    page.click("text=Set up two-factor sign-in")
    page.wait_for_selector(".qr svg")
    key = page.inner_text("code.key").replace(" ", "")
    page.fill("#confirm-code", pyotp.TOTP(key).now())
    page.click("text=Turn on")
    page.wait_for_selector("#backup-codes")
    assert len(page.query_selector_all("#backup-codes li")) == 10
    shot(page, "backup-codes")

    page.click("button:has-text('Sign out')")
    sign_in(page, running, SANDBOX_USERS["olena"])
    page.wait_for_selector("text=Enter your code")
    page.fill("#code", "000000" if pyotp.TOTP(key).now() != "000000" else "111111")
    page.click("text=Verify")
    page.wait_for_selector(".alert")
    page.fill("#code", pyotp.TOTP(key).at(time.time() + 30))
    page.click("text=Verify")
    page.wait_for_selector("text=Your Upwork account")

    phone = new_page(
        chromium,
        user_agent=(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
        ),
        viewport={"width": 360, "height": 740},
    )
    sign_in(phone, running, SANDBOX_USERS["olena"])
    phone.wait_for_selector("text=Enter your code")
    page.goto(running.url + "/security")
    # The phone waits for its code: no session of its own yet.
    assert "Mobile Safari on iOS" not in page.inner_text("#sessions")
    shot(page, "security")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_revoke_other_sessions_and_admin_block(chromium: Browser, running: RunningApp) -> None:
    admin = new_page(chromium)
    sign_in(admin, running, SANDBOX_USERS["alex"])
    admin.wait_for_selector("text=Your Upwork account")
    other = new_page(chromium)
    sign_in(other, running, SANDBOX_USERS["alex"])
    other.wait_for_selector("text=Your Upwork account")
    admin.goto(running.url + "/security")
    assert admin.inner_text("#sessions").count("Sign out") >= 2
    admin.click("text=Sign out everywhere else")
    admin.wait_for_selector(".notice")
    other.reload()
    assert other.is_visible("text=Sign in with Upwork")

    victim = new_page(chromium)
    sign_in(victim, running, SANDBOX_USERS["noemail"])
    victim.wait_for_selector("text=Your Upwork account")
    assert cli(running, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0
    admin.goto(running.url + "/admin?q=Sam")
    admin.fill("input[name=reason]", "testing")
    admin.click("button:has-text('Block')")
    admin.wait_for_selector(".notice")
    shot(admin, "admin")
    victim.reload()
    assert victim.is_visible("text=Sign in with Upwork")  # signed out at once
    sign_in(victim, running, SANDBOX_USERS["noemail"])
    victim.wait_for_selector(".alert")
    assert "blocked by an administrator" in victim.inner_text(".alert")
