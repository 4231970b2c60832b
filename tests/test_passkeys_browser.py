"""Passkeys in a real browser: Debian's Chromium with a virtual authenticator (the Chrome
DevTools Protocol's WebAuthn domain) against the real server, reached as
http://localhost:<port> (browsers refuse WebAuthn on an IP address). Adding a passkey on
the Security page, the sign-in's MFA step with it, confirming and removing it, a device
without it, a page opened at the wrong address; on a phone, in both themes, checked by
axe-core. With SCREENSHOTS_DIR set, the passkey screenshots of docs/screenshots."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.sync_api import Browser, CDPSession, Page

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import rows
from .soft_authenticator import SoftAuthenticator
from .test_browser import (
    ARTIFACTS,
    AXE,
    DESKTOP,
    IPHONE_UA,
    PHONE,
    check_accessibility,
    new_page,
    no_horizontal_scroll,
    shot,
    sign_in,
    wait_dashboard,
)
from .upwork_helpers import csrf_headers
from .upwork_helpers import sign_in as sign_in_http

#: A platform authenticator that verifies the user (a fingerprint, a face) at once.
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail("axe-core is missing: `make test` fetches it (scripts/ensure-browser.sh)")
    return AXE.read_text()


def authenticator(page: Page, synced: bool = False) -> tuple[CDPSession, str]:
    """A virtual authenticator for ``page`` (until removed); ``synced``: its passkeys are
    backed up (as a password manager's are)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options: dict[str, Any] = dict(AUTHENTICATOR)
    if synced:
        options.update(defaultBackupEligibility=True, defaultBackupState=True)
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, str(added["authenticatorId"])


def credentials(cdp: CDPSession, authenticator_id: str) -> list[dict[str, Any]]:
    got = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    return list(got["credentials"])


def add_passkey(page: Page, app: RunningApp, name: str) -> None:
    """The Security page's "Add a passkey"; MFA was off: the backup codes are shown."""
    page.goto(app.url + "/security")
    page.fill("#passkey-name", name)
    page.click("form[data-passkey-register] button[type=submit]")
    page.wait_for_selector("#backup-codes")


def mfa_step(page: Page, app: RunningApp, who: str = "olena") -> None:
    page.click(".signout button")
    page.wait_for_selector(".upwork-button")
    sign_in(page, app, SANDBOX_USERS[who])
    page.wait_for_url("**/mfa")
    page.wait_for_selector("[data-passkey-start]")


def passkey_names(page: Page) -> list[str]:
    return [s.inner_text() for s in page.query_selector_all("ul.passkeys li strong")]


def test_passkey_journey(chromium: Browser, app_factory: AppFactory, axe_source: str) -> None:
    app = app_factory(host="localhost")
    assert app.url.startswith("http://localhost:")
    page = new_page(chromium)
    cdp, first = authenticator(page)
    sign_in(page, app, SANDBOX_USERS["olena"])
    wait_dashboard(page)

    # MFA off: adding a passkey needs no confirmation and turns MFA on, with backup codes.
    page.goto(app.url + "/security")
    assert page.is_visible("text=No passkeys yet.")
    check_accessibility(page, axe_source, "security, no passkeys")
    add_passkey(page, app, "YubiKey")
    assert len(page.query_selector_all("#backup-codes li")) == 10
    assert "Your passkey is added" in page.inner_text(".notice")
    assert len(credentials(cdp, first)) == 1
    page.click("text=I have saved them")
    page.wait_for_selector("ul.passkeys")
    assert passkey_names(page) == ["YubiKey"]
    assert "never used" in page.inner_text("ul.passkeys li small")
    assert page.is_visible("#mfa >> text=On")
    check_accessibility(page, axe_source, "security with a passkey")
    shot(page, "passkeys-security")

    # Rename it (a plain form).
    page.click("ul.passkeys summary:has-text('Rename')")
    page.fill("ul.passkeys input[name=name]", "My YubiKey")
    page.click("ul.passkeys button:has-text('Save')")
    page.wait_for_selector(".notice")
    assert passkey_names(page) == ["My YubiKey"]

    # Sign out and in again: the MFA step offers the passkey first, the code form after.
    mfa_step(page, app)
    assert page.is_visible("text=Use your passkey")
    assert page.is_hidden("#code")
    check_accessibility(page, axe_source, "MFA step with a passkey")
    shot(page, "passkeys-mfa")
    page.click("text=Use another way")
    assert page.is_visible("#code")
    assert page.get_attribute("[data-passkey-other]", "aria-expanded") == "true"
    page.click("text=Use your passkey")
    wait_dashboard(page)
    page.goto(app.url + "/security")
    assert "last used" in page.inner_text("ul.passkeys li small")
    assert "never used" not in page.inner_text("ul.passkeys li small")

    # The sign-in's MFA step counts as a confirmation for five minutes: make it older.
    rows(app.db_path, "UPDATE sessions SET mfa_verified_at = NULL")
    page.reload()
    assert page.is_visible("text=Confirm it's you")
    assert page.is_hidden("#passkey-name") or not page.query_selector("#passkey-name")
    assert not page.query_selector("ul.passkeys summary:has-text('Remove')")
    check_accessibility(page, axe_source, "security, confirm first")
    page.click("text=Use a passkey")
    page.wait_for_selector(".notice")
    assert "Confirmed" in page.inner_text(".notice")

    # Remove it: the last factor, so two-factor sign-in goes off.
    page.click("ul.passkeys summary:has-text('Remove')")
    page.click("text=Remove this passkey")
    page.wait_for_selector(".notice")
    assert "Two-factor sign-in is off" in page.inner_text(".notice")
    assert page.is_visible("text=No passkeys yet.")

    # Again with the first authenticator, which then goes; a second one never registered.
    add_passkey(page, app, "YubiKey")
    page.click("text=I have saved them")
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": first})
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    mfa_step(page, app)
    page.click("text=Use your passkey")
    alert = page.wait_for_selector("[data-passkey-message]:not(:empty)")
    assert alert is not None and alert.get_attribute("role") == "alert"
    assert "no passkey for your account here" in alert.inner_text()
    assert page.url.endswith("/mfa")
    assert page.is_visible("text=Use your passkey")  # still offered: try again, or a code
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_authenticator_app_beside_a_passkey(
    chromium: Browser, app_factory: AppFactory, axe_source: str
) -> None:
    app = app_factory(host="localhost")
    page = new_page(chromium)
    authenticator(page)
    sign_in(page, app, SANDBOX_USERS["alex"])
    wait_dashboard(page)
    other = new_page(chromium)
    sign_in(other, app, SANDBOX_USERS["alex"])
    wait_dashboard(other)

    # The first passkey, signing out the other session on the way.
    page.goto(app.url + "/security")
    page.fill("#passkey-name", "Laptop")
    page.check("#passkey-revoke-others")
    page.click("form[data-passkey-register] button[type=submit]")
    page.wait_for_selector("#backup-codes")
    assert "other sessions are signed out" in page.inner_text(".notice")
    other.reload()
    assert other.is_visible(".upwork-button")

    # The authenticator app beside it (this session is fresh: it just added a factor).
    page.click("text=I have saved them")
    page.click("text=Set up an authenticator app")
    page.wait_for_selector(".qr svg")
    key = page.inner_text("code.key").replace(" ", "")
    page.fill("#confirm-code", pyotp.TOTP(key).now())
    page.click("text=Turn on")
    page.wait_for_selector(".notice")
    assert not page.query_selector("#backup-codes")  # MFA was on already: no new codes
    assert page.is_visible("text=Remove authenticator app")

    # Later: confirm with a code first, then remove the app; the passkey keeps MFA on.
    rows(app.db_path, "UPDATE sessions SET mfa_verified_at = NULL")
    page.reload()
    assert not page.query_selector("text=Remove authenticator app")
    assert page.is_visible("text=Use a passkey")
    check_accessibility(page, axe_source, "security, confirm with a code or a passkey")
    page.fill("#reauth-code", "000000")
    page.click("#confirm button[type=submit]")
    page.wait_for_selector(".alert[role=alert]")
    assert "not right" in page.inner_text(".alert[role=alert]")
    page.fill("#reauth-code", pyotp.TOTP(key).at(time.time() + 30))
    page.click("#confirm button[type=submit]")
    page.wait_for_selector(".notice")
    assert "Confirmed" in page.inner_text(".notice")
    page.check("#remove-app-revoke-others")
    page.click("text=Remove authenticator app")
    page.wait_for_selector(".notice")
    assert "authenticator app is removed" in page.inner_text(".notice")
    assert passkey_names(page) == ["Laptop"]
    assert page.is_visible("#mfa >> text=On")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_passkey_pages_on_a_phone_in_both_themes(
    chromium: Browser, app_factory: AppFactory, axe_source: str
) -> None:
    app = app_factory(host="localhost")
    for scheme, locale in (("light", "en-US"), ("dark", "uk-UA")):
        phone = new_page(
            chromium,
            viewport=PHONE,
            user_agent=IPHONE_UA,
            is_mobile=True,
            has_touch=True,
            color_scheme=scheme,
            locale=locale,
        )
        authenticator(phone)
        who = "olena" if scheme == "light" else "alex"
        sign_in(phone, app, SANDBOX_USERS[who])
        wait_dashboard(phone)
        add_passkey(phone, app, "A passkey with a rather long name for a phone")
        no_horizontal_scroll(phone, f"backup codes ({scheme})")
        phone.goto(app.url + "/security")
        phone.click("ul.passkeys summary >> nth=0")  # the rename form open
        no_horizontal_scroll(phone, f"security with a passkey ({scheme})")
        check_accessibility(phone, axe_source, f"security with a passkey on a phone ({scheme})")
        shot(phone, f"phone-passkeys-security-{scheme}")
        mfa_step(phone, app, who)
        no_horizontal_scroll(phone, f"MFA step ({scheme})")
        check_accessibility(phone, axe_source, f"MFA step on a phone ({scheme})")
        phone.click("[data-passkey-other]")
        check_accessibility(phone, axe_source, f"MFA step, another way, on a phone ({scheme})")
        shot(phone, f"phone-passkeys-mfa-{scheme}")
        phone.click("[data-passkey-start]")
        wait_dashboard(phone)
        assert phone.console_errors == []  # type: ignore[attr-defined]
        phone.context.close()


def test_wrong_address_and_no_webauthn_show_a_message(
    chromium: Browser, app_factory: AppFactory
) -> None:
    """Opened at http://127.0.0.1 (development's APP_BASE_URL), the page links to
    localhost instead of trying; a browser without WebAuthn is told so."""
    app = app_factory()
    assert app.url.startswith("http://127.0.0.1:")
    page = new_page(chromium)
    sign_in(page, app, SANDBOX_USERS["alex"])
    wait_dashboard(page)
    page.goto(app.url + "/security")
    origin = page.wait_for_selector("[data-passkey-origin]:visible")
    assert origin is not None
    link = app.url.replace("127.0.0.1", "localhost") + "/security"
    assert page.get_attribute("[data-passkey-origin] a", "href") == link
    assert page.is_hidden("#passkey-name")

    # A passkey added elsewhere (a software authenticator at localhost, through the API):
    # the MFA step at 127.0.0.1 sends to the sign-in at localhost and keeps the code form.
    olena, _ = sign_in_http(app, SANDBOX_USERS["olena"])
    key = SoftAuthenticator(origin=app.app.state.services.mfa.passkeys.rp.origin)
    api = "/api/security/mfa/webauthn/register/"
    options = olena.post(api + "options", headers=csrf_headers(olena)).json()
    added = olena.post(
        api + "verify",
        headers=csrf_headers(olena),
        json={"name": "YubiKey", "credential": key.create(options)},
    )
    assert added.status_code == 200, added.text
    second = new_page(chromium)
    sign_in(second, app, SANDBOX_USERS["olena"])
    second.wait_for_url("**/mfa")
    assert second.wait_for_selector("[data-passkey-origin]:visible") is not None
    home = app.url.replace("127.0.0.1", "localhost") + "/"
    assert second.get_attribute("[data-passkey-origin] a", "href") == home
    assert second.is_hidden("[data-passkey-start]") and second.is_visible("#code")

    # At the right address, a browser without WebAuthn.
    named = app_factory(host="localhost")
    bare = new_page(chromium)
    bare.add_init_script("delete window.PublicKeyCredential")
    sign_in(bare, named, SANDBOX_USERS["olena"])
    wait_dashboard(bare)
    bare.goto(named.url + "/security")
    assert bare.wait_for_selector("[data-passkey-unsupported]:visible") is not None
    assert bare.is_hidden("#passkey-name")
    for p in (page, second, bare):
        assert p.console_errors == []  # type: ignore[attr-defined]


def test_malformed_credential_is_a_clear_message(
    chromium: Browser, app_factory: AppFactory
) -> None:
    app = app_factory(host="localhost")
    page = new_page(chromium)
    sign_in(page, app, SANDBOX_USERS["alex"])
    wait_dashboard(page)
    page.goto(app.url + "/security")
    page.fill("#passkey-name", "Broken")
    with page.expect_navigation():  # a script's submit: Playwright would not wait for it
        page.eval_on_selector(
            "form[data-passkey-register]",
            "f => { f.querySelector('[name=credential]').value = '{not json'; f.submit(); }",
        )
    page.wait_for_selector(".alert[role=alert]")
    assert "could not be verified" in page.inner_text(".alert[role=alert]")
    assert page.is_visible("text=No passkeys yet.")


def test_bad_input_to_the_passkey_forms_is_a_message(running: RunningApp) -> None:
    """Whatever the page forms get, an answer the person can read: never a 500."""
    browser, _ = sign_in_http(running, SANDBOX_USERS["alex"])
    csrf = browser.client.cookies["csrf_token"]
    deep = "[" * 5000 + "]" * 5000
    for credential in ("", "{not json", "[]", "1", "null", '{"id": "x"}', deep, "{" + "}" * 3):
        r = browser.post(
            "/security/passkeys",
            data={"csrf_token": csrf, "name": "Key", "credential": credential},
        )
        assert r.status_code == 303, (credential[:20], r.status_code)
        assert r.headers["location"].startswith("/security?error=passkey_"), credential[:20]
    page = browser.get("/security?error=passkey_invalid")
    assert "could not be verified" in page.text and 'role="alert"' in page.text
    nameless = browser.post(
        "/security/passkeys",
        data={"csrf_token": csrf, "name": " ", "credential": '{"id": "x"}'},
    )
    assert nameless.status_code == 303
    huge = browser.post(
        "/security/passkeys", data={"csrf_token": csrf, "name": "K", "credential": "x" * 30_000}
    )
    assert huge.status_code == 422
    for path, data in (
        ("/security/passkeys/nope/rename", {"name": "New"}),
        ("/security/passkeys/nope/remove", {}),
        ("/security/mfa/confirm", {"code": "123456"}),
        ("/security/mfa/remove-app", {}),
    ):
        r = browser.post(path, data={"csrf_token": csrf, **data})
        assert r.status_code == 303 and "?error=" in r.headers["location"], path
    # Without the CSRF token: refused.
    r = browser.post("/security/passkeys", data={"name": "K", "credential": "{}"})
    assert r.status_code in {303, 403} and "csrf_failed" in r.headers.get("location", r.text)


SCREENSHOTS = [
    # (file name, language, theme, viewport, page)
    ("security-passkeys-en-light-desktop", "en-US", "light", DESKTOP, "/security"),
    ("mfa-passkey-uk-dark-phone", "uk-UA", "dark", PHONE, "/mfa"),
]


def test_passkey_screenshots(chromium: Browser, app_factory: AppFactory) -> None:
    """The passkey pages of docs/screenshots (with SCREENSHOTS_DIR set; else artifacts)."""
    app = app_factory(host="localhost", sandbox_scopes="all")
    target = Path(os.environ.get("SCREENSHOTS_DIR") or ARTIFACTS / "set")
    target.mkdir(parents=True, exist_ok=True)
    for name, locale, scheme, viewport, path in SCREENSHOTS:
        page = new_page(chromium, locale=locale, color_scheme=scheme, viewport=viewport)
        authenticator(page, synced=True)
        sign_in(page, app, SANDBOX_USERS["olena"])
        if path == "/security":
            wait_dashboard(page)
            # A synced passkey (a phone's password manager); the next one a security key.
            add_passkey(page, app, "Pixel 8")
            page.click("a.button[href='/security']")
            page.wait_for_selector("ul.passkeys")
            assert page.is_visible("ul.passkeys .badge:has-text('Synced')")
            page.fill("#passkey-name", "YubiKey 5")
        else:
            page.wait_for_url("**/mfa")
            page.wait_for_selector("[data-passkey-start]")
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)
        page.context.close()
        assert (target / f"{name}.png").stat().st_size > 5000
