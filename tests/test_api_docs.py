"""The interactive API docs at /docs: Swagger UI served by the app itself (no CDN), under the
same strict Content-Security-Policy as every other page (no 'unsafe-inline' anywhere), in
Debian's Chromium driven by Playwright and over plain HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
from playwright.sync_api import Browser

from upwork_assistant.app import create_app

from .fixtures import RunningApp, production_settings


def same_origin_assets(running: RunningApp, html: str) -> list[str]:
    """Every src= and href= on the page, made absolute; fails on any other origin's."""
    origin = urlsplit(running.url)
    urls = [urljoin(f"{running.url}/docs", u) for u in re.findall(r'(?:src|href)="([^"]+)"', html)]
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url
    return urls


def test_docs_page_uses_only_own_assets(running: RunningApp) -> None:
    page = httpx.get(f"{running.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    assert "cdn" not in page.text.lower()
    urls = same_origin_assets(running, page.text)
    scripts = [u for u in urls if u.endswith(".js")]
    assert len(scripts) == 2 and any(u.endswith(".css") for u in urls), urls
    for url in urls:
        asset = httpx.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    for url in scripts:
        assert httpx.get(url).headers["content-type"].startswith("text/javascript"), url
    # Only the files named: not the rest of the package's folder, nor paths out of it.
    for name in ["redoc.standalone.js", "favicon.png", "..%2Fdocs.py", "nope.js"]:
        assert httpx.get(f"{running.url}/docs/assets/{name}").status_code == 404, name
    # ReDoc is off; FastAPI's OAuth2 redirect page (inline script) is not served either.
    assert httpx.get(f"{running.url}/redoc").status_code == 404
    assert httpx.get(f"{running.url}/docs/oauth2-redirect").status_code == 404


def test_docs_csp_is_everyone_elses(running: RunningApp) -> None:
    """Swagger UI needs nothing more than 'self': the policy is the one all pages get
    (tests/test_api.py checks that one directive by directive)."""
    everyone = httpx.get(f"{running.url}/").headers["content-security-policy"]
    assert "'unsafe-" not in everyone
    for path in ["/docs", "/docs/assets/swagger-init.js", "/docs/assets/swagger-ui.css"]:
        csp = httpx.get(f"{running.url}{path}").headers["content-security-policy"]
        assert csp == everyone, path


async def test_docs_in_production(tmp_path: Path) -> None:
    """Docs stay on in production: the OpenAPI document they show is public anyway."""
    settings = production_settings(tmp_path)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://demo.example") as c:
        page = await c.get("/docs")
        assert page.status_code == 200
        assert "swagger-init.js" in page.text
        assert (await c.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
        assert (await c.get("/redoc")).status_code == 404
        other = await c.get("/healthz")
        csp = page.headers["content-security-policy"]
        assert csp == other.headers["content-security-policy"] and "'unsafe-" not in csp


def test_docs_render_in_a_browser(running: RunningApp, chromium: Browser) -> None:
    origin = urlsplit(running.url).netloc
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    console: list[str] = []
    problems: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on(
        "request",
        lambda r: None if urlsplit(r.url).netloc == origin else foreign.append(r.url),
    )
    # Also the page's own view of its policy: every violation, reported or not.
    page.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', e =>"
        " window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    try:
        page.goto(f"{running.url}/docs")
        # A cold path (1.5 MB of Swagger UI, the first /openapi.json): the default timeout.
        page.wait_for_selector(".swagger-ui .opblock")
        for path in ["/api/auth/me", "/api/upwork/profile", "/healthz"]:
            operation = page.locator(f'.opblock-summary-path[data-path="{path}"]').first
            operation.wait_for(state="visible")
        assert page.get_by_text("/api/auth/me", exact=True).first.is_visible()
        assert page.get_by_text("/api/upwork/profile", exact=True).first.is_visible()
        # Open an operation, show its schema, and run it: Swagger UI styles these at run
        # time (highlighted code, expanded models), all of it within style-src 'self'.
        page.locator('.opblock-summary-path[data-path="/healthz"]').first.click()
        page.get_by_role("button", name="Try it out").first.click()
        page.get_by_role("button", name="Execute").first.click()
        page.locator(".live-responses-table tr.response td.response-col_status").first.wait_for()
        assert (
            "200"
            in page.locator(
                ".live-responses-table tr.response td.response-col_status"
            ).first.text_content()
        )
        page.get_by_text("Schema", exact=True).first.click()
        page.wait_for_timeout(300)
        violations = page.evaluate("window.cspViolations")
    finally:
        context.close()
    violations += [m for m in console if "content security policy" in m.lower()]
    assert not violations, violations
    assert not problems, problems
    assert not foreign, foreign
    assert not [m for m in console if m.startswith("error")], console
