"""The product names itself only by APP_NAME, never by Upwork's brand, and wears none of
Upwork's colours: Upwork's API terms forbid its name, logo and brand colours in an app
(docs/web-interface.md, "Name and colours"). Over real HTTP, signed out and signed in."""

from __future__ import annotations

import colorsys
import html
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from pydantic import ValidationError

import upwork_assistant.web
from upwork_assistant.config import ConfigError, Settings, get_settings

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser
from .test_mfa import code_at, enable_mfa, sign_out, start_mfa_sign_in
from .test_security_log import cli
from .upwork_helpers import csrf_headers, sign_in

NAME = "Testa Desk"
UK = {"Accept-Language": "uk-UA,uk;q=0.9"}
STATIC = Path(upwork_assistant.web.__file__).parent / "static"


def assert_branded(page: httpx.Response, name: str = NAME) -> None:
    """The page names the product ``name`` in its title, header and footer, and never by
    the old name or the default one."""
    assert page.headers["content-type"].startswith("text/html"), page.url
    title = re.search(r"<title>(.*?)</title>", page.text, re.S)
    assert title and html.unescape(title.group(1)).endswith(f" · {name}"), (page.url, title)
    brand = re.search(r'<a class="brand" href="/">(.*?)</a>', page.text, re.S)
    assert brand and html.unescape(brand.group(1)).strip().endswith(name), (page.url, brand)
    foot = re.search(r'<footer class="foot"><p>(.*?)</p>', page.text, re.S)
    assert foot and html.unescape(foot.group(1)).startswith(name), (page.url, foot)
    assert "Upwork Inc." in foot.group(1)  # the disclaimer stays
    text = html.unescape(page.text)
    assert "Upwork Assistant" not in text, page.url
    if name != "Freelance Desk":
        assert "Freelance Desk" not in text, page.url


@pytest.fixture
def named(app_factory: AppFactory) -> RunningApp:
    return app_factory(app_name=NAME)


def test_signed_out_pages_use_the_app_name(named: RunningApp) -> None:
    browser = named.browser()
    signin = browser.get("/")
    assert_branded(signin)
    assert f"{NAME} helps freelancers" in html.unescape(signin.text)
    # "Sign in with Upwork" names the provider, with no Upwork logo ("up" mark) beside it.
    button = re.search(r'<a class="upwork-button"[^>]*>(.*?)</a>', signin.text, re.S)
    assert button and "Sign in with Upwork" in button.group(1)
    assert ">up<" not in button.group(1) and "<img" not in button.group(1)

    ukrainian = browser.get("/", headers=UK)
    assert_branded(ukrainian)
    assert f"{NAME} допомагає фрилансерам" in html.unescape(ukrainian.text)

    denied = browser.get("/?error=access_denied")
    assert_branded(denied)
    assert "This service needs that access" in html.unescape(denied.text)
    assert_branded(browser.get("/?error=access_denied", headers=UK))

    missing = browser.get("/no-such-page")
    assert missing.status_code == 404
    assert_branded(missing)
    assert_branded(browser.get("/no-such-page", headers=UK))


def test_signed_in_pages_use_the_app_name(named: RunningApp) -> None:
    browser, _ = sign_in(named, SANDBOX_USERS["alex"])
    assert cli(named, "users", "promote", SANDBOX_USERS["alex"]).returncode == 0
    for path in ("/", "/security", "/account", "/admin", "/no-such-page"):
        assert_branded(browser.get(path))
        assert_branded(browser.get(path, headers=UK))

    # MFA set-up and the backup codes page; the downloaded .txt names the product too.
    setup, done = set_up_mfa_with_forms(browser)
    assert_branded(setup)
    assert_branded(done)
    assert download_text(done).startswith(f"{NAME} backup codes\n\n")


def set_up_mfa_with_forms(browser: Browser) -> tuple[httpx.Response, httpx.Response]:
    """The security page's set-up (QR code and key), then the backup codes page."""
    csrf = browser.client.cookies["csrf_token"]
    setup = browser.post("/security/mfa/setup", data={"csrf_token": csrf})
    key = re.search(r'<code class="key">([A-Z2-7 ]+)</code>', setup.text)
    assert setup.status_code == 200 and key
    done = browser.post(
        "/security/mfa/verify",
        data={"csrf_token": csrf, "code": code_at(key.group(1).replace(" ", ""))},
    )
    assert done.status_code == 200 and 'id="backup-codes"' in done.text
    return setup, done


def download_text(page: httpx.Response) -> str:
    """The text of the backup codes' "Download as .txt" link (a data: URL)."""
    href = re.search(
        r'download="backup-codes.txt"\s+href="data:text/plain;charset=utf-8,([^"]+)"', page.text
    )
    assert href, "no backup codes download"
    return unquote(html.unescape(href.group(1)))


def test_mfa_page_uses_the_app_name(named: RunningApp) -> None:
    browser, _ = sign_in(named, SANDBOX_USERS["olena"])
    enable_mfa(browser)
    sign_out(browser)
    start_mfa_sign_in(browser, SANDBOX_USERS["olena"])
    page = browser.get("/mfa")
    assert page.status_code == 200 and 'name="code"' in page.text
    assert_branded(page)


def test_openapi_title_and_totp_issuer(named: RunningApp) -> None:
    assert named.api().get("/openapi.json").json()["info"]["title"] == NAME
    browser, _ = sign_in(named, SANDBOX_USERS["olena"])
    setup = browser.post("/api/security/mfa/setup", headers=csrf_headers(browser)).json()
    uri = urlsplit(setup["otpauth_uri"])
    assert parse_qs(uri.query)["issuer"] == [NAME]
    assert unquote(uri.path).startswith(f"/{NAME}:")  # the label authenticator apps show


def test_a_name_with_markup_is_escaped_on_pages_and_plain_in_the_download(
    app_factory: AppFactory,
) -> None:
    name = 'Tom & <b>"Co"</b>'
    app = app_factory(app_name=name)
    assert_branded(app.browser().get("/"), name)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    page = browser.get("/")
    assert_branded(page, name)
    assert "<b>" not in page.text
    _, done = set_up_mfa_with_forms(browser)
    assert "<b>" not in done.text
    assert download_text(done).startswith(f"{name} backup codes\n\n")


def test_the_name_may_not_contain_upwork(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("My Upwork Tool", "upwork helper", "UPWORK", "Up work? no: UpWork"):
        with pytest.raises(ValidationError, match="must not contain 'Upwork'"):
            Settings(app_name=bad)
    monkeypatch.setenv("APP_NAME", "Upwork Assistant")
    with pytest.raises(ConfigError, match="APP_NAME"):
        get_settings()
    monkeypatch.setenv("APP_NAME", "  Testa   Desk ")
    assert get_settings().app_name == NAME
    monkeypatch.delenv("APP_NAME")
    assert Settings().app_name == "Freelance Desk"


# ----- colours ------------------------------------------------------------------------

#: Upwork's brand greens.
UPWORK_GREENS = ("#14a800", "#108a00", "#6fda44", "#3c8224")
HEX = re.compile(r"#([0-9a-fA-F]{8}|[0-9a-fA-F]{6}|[0-9a-fA-F]{3,4})\b")
RGB_FN = re.compile(r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)")


def rgb(hex_colour: str) -> tuple[int, int, int]:
    digits = hex_colour.lstrip("#")
    if len(digits) in (3, 4):
        digits = "".join(c * 2 for c in digits[:3])
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def colours(source: str) -> list[tuple[str, tuple[int, int, int]]]:
    found = [(m.group(0), rgb(m.group(0))) for m in HEX.finditer(source)]
    found += [(m.group(0), (int(m[1]), int(m[2]), int(m[3]))) for m in RGB_FN.finditer(source)]
    return found


def looks_like_upwork_green(colour: tuple[int, int, int]) -> bool:
    """Any clearly green, saturated colour (hue 75-165 degrees) is too close to Upwork's
    brand: its greens and their lighter and darker variants all fall in that band. Greys
    and near-blacks or near-whites with a green cast are not flagged."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*(c / 255 for c in colour))
    near = any(
        sum((a - b) ** 2 for a, b in zip(colour, rgb(g), strict=True)) < 60**2
        for g in UPWORK_GREENS
    )
    return near or (75 <= hue * 360 <= 165 and saturation >= 0.3 and 0.1 <= lightness <= 0.9)


def test_the_green_detector_catches_upwork_greens() -> None:
    for green in (*UPWORK_GREENS, "#0f7a00", "#0d6b00", "#7fe070", "#0b5c00", "#73bb44"):
        assert looks_like_upwork_green(rgb(green)), green
    for other in ("#4338ca", "#818cf8", "#ffffff", "#000000", "#8a1c1c", "#fff4cc", "#1f57c3"):
        assert not looks_like_upwork_green(rgb(other)), other


def test_static_files_use_none_of_upworks_greens() -> None:
    files = sorted(p for p in STATIC.rglob("*") if p.suffix in {".css", ".svg"})
    assert any(p.name == "app.css" for p in files) and any(p.suffix == ".svg" for p in files)
    offending = [
        f"{p.name}: {text}"
        for p in files
        for text, colour in colours(p.read_text())
        if looks_like_upwork_green(colour)
    ]
    assert not offending, offending
    for svg in STATIC.rglob("*.svg"):  # our mark is a shape, not a wordmark
        assert "<text" not in svg.read_text(), svg.name


#: Text (4.5:1) and UI parts (3:1) on the backgrounds they sit on: WCAG 2.1 AA.
CONTRAST_PAIRS = [
    (4.5, "ink", "bg"),
    (4.5, "ink", "card"),
    (4.5, "ink", "field"),
    (4.5, "muted", "bg"),
    (4.5, "muted", "card"),
    (4.5, "accent-ink", "bg"),
    (4.5, "accent-ink", "card"),
    (4.5, "on-accent", "accent-strong"),
    (4.5, "on-accent", "accent-hover"),
    (4.5, "badge-ink", "badge-bg"),
    (4.5, "bg", "ink"),
    (4.5, "warn-ink", "warn-bg"),
    (4.5, "err-ink", "err-bg"),
    (4.5, "err-ink", "card"),
    (3.0, "accent", "card"),
    (3.0, "accent-strong", "card"),
    (3.0, "focus", "bg"),
    (3.0, "focus", "card"),
    (3.0, "muted", "field"),
]


def luminance(colour: tuple[int, int, int]) -> float:
    linear = [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        for c in (v / 255 for v in colour)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(rgb(a)), luminance(rgb(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_palette_meets_wcag_aa_in_both_themes() -> None:
    css = (STATIC / "app.css").read_text()

    def variables(selector: str) -> dict[str, str]:
        block = re.search(re.escape(selector) + r"\s*\{([^}]*)\}", css)
        assert block, selector
        return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})\b", block.group(1)))

    light = variables(":root")
    chosen_dark = variables(':root[data-theme="dark"]')
    assert variables(':root:not([data-theme="light"])') == chosen_dark  # the system's dark
    for theme, palette in (("light", light), ("dark", {**light, **chosen_dark})):
        for needed, fg, bg in CONTRAST_PAIRS:
            ratio = contrast(palette[fg], palette[bg])
            assert ratio >= needed, f"{theme}: --{fg} on --{bg} is {ratio:.2f}:1"
