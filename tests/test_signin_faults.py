"""Every named fault of the sign-in flow: a clear message for a person, clean JSON for an API
client, never a 500, never a half-created account, never a secret in a log line or URL."""

from __future__ import annotations

import html
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from upwork_assistant.auth.errors import reason

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser, count, rows


def assert_nothing_written(app: RunningApp) -> None:
    for table in ("users", "upwork_connections", "sessions"):
        assert count(app.db_path, table) == 0, table


def failures(app: RunningApp) -> list[dict[str, Any]]:
    return [
        json.loads(r[0])
        for r in rows(
            app.db_path, "SELECT details FROM audit_events WHERE event_type='signin.failed'"
        )
    ]


def assert_browser_error(browser: Browser, response: httpx.Response, code: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/?error={code}"
    page = browser.get(response.headers["location"])
    assert page.status_code == 200
    assert reason(code).message in html.unescape(page.text)


def callback_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ----- state and flow cookie ---------------------------------------------------------------


def test_state_missing(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    params = callback_params(callback)
    r = browser.get("/api/auth/upwork/callback", params={"code": params["code"]})
    assert_browser_error(browser, r, "state_missing")
    api = running.api().get("/api/auth/upwork/callback", params={"code": params["code"]})
    assert api.status_code == 400 and api.json()["error"] == "state_missing"
    assert set(api.json()) == {"error", "message"}
    assert_nothing_written(running)


def test_state_wrong(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    params = callback_params(callback)
    r = browser.get(
        "/api/auth/upwork/callback", params={"code": params["code"], "state": params["state"] + "x"}
    )
    assert_browser_error(browser, r, "state_invalid")
    assert_nothing_written(running)
    assert failures(running)[-1]["reason_code"] == "state_invalid"


def test_state_replayed(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    flow_cookies = {k: v for k, v in browser.client.cookies.items() if k.startswith("ua_oauth_")}
    assert browser.get(callback).headers["location"] == "/"
    # Replay the same callback with the flow cookie a thief copied before it was cleared.
    thief = running.browser()
    for name, value in flow_cookies.items():
        thief.client.cookies.set(name, value, path="/api/auth/upwork/callback")
    r = thief.get(callback)
    assert_browser_error(thief, r, "state_reused")
    assert count(running.db_path, "sessions") == 1


def test_flow_expired(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    rows(running.db_path, "UPDATE oauth_flows SET expires_at='2000-01-01 00:00:00.000000'")
    r = browser.get(callback)
    assert_browser_error(browser, r, "flow_expired")
    assert_nothing_written(running)
    # Nothing was exchanged: the code never reached Upwork's token endpoint.
    assert running.sandbox_state.stats["token_requests"] == 0


def test_callback_in_another_browser(running: RunningApp) -> None:
    victim = running.browser()
    callback = victim.decide(victim.start_sign_in())
    other = running.browser()  # login CSRF: the attacker's callback opened elsewhere
    r = other.get(callback)
    assert_browser_error(other, r, "flow_cookie_missing")
    api = running.api().get(callback)
    assert api.status_code == 400 and api.json()["error"] == "flow_cookie_missing"
    assert_nothing_written(running)
    assert running.sandbox_state.stats["token_requests"] == 0


def test_tampered_flow_cookie(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in())
    (name,) = [k for k in browser.client.cookies if k.startswith("ua_oauth_")]
    value = browser.client.cookies[name]
    browser.client.cookies.clear()
    browser.client.cookies.set(name, value[:-2] + "AA", path="/api/auth/upwork/callback")
    assert_browser_error(browser, browser.get(callback), "state_invalid")
    assert_nothing_written(running)


# ----- Upwork's answers -------------------------------------------------------------------


def test_access_denied(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in(), decision="deny")
    assert callback_params(callback)["error"] == "access_denied"
    r = browser.get(callback)
    assert_browser_error(browser, r, "access_denied")
    assert_nothing_written(running)
    assert failures(running)[-1]["reason_code"] == "access_denied"
    assert failures(running)[-1]["upwork_message"] == "The user denied access"  # Upwork's words


def test_access_denied_api_client(running: RunningApp) -> None:
    browser = running.browser()
    callback = browser.decide(browser.start_sign_in(), decision="deny")
    r = browser.get(callback, headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json()["error"] == "access_denied"


def test_code_replayed(running: RunningApp) -> None:
    browser = running.browser()
    first = browser.decide(browser.start_sign_in())
    assert browser.get(first).headers["location"] == "/"
    old_code = callback_params(first)["code"]
    # A fresh, valid flow in the same browser, but with the old (used) code.
    second = browser.decide(browser.start_sign_in())
    params = callback_params(second)
    r = browser.get(
        "/api/auth/upwork/callback", params={"code": old_code, "state": params["state"]}
    )
    assert_browser_error(browser, r, "code_rejected")
    assert count(running.db_path, "sessions") == 1  # only the first sign-in's


def test_other_upwork_error(running: RunningApp) -> None:
    browser = running.browser()
    params = callback_params(browser.decide(browser.start_sign_in()))
    r = browser.get(
        "/api/auth/upwork/callback", params={"error": "server_error", "state": params["state"]}
    )
    assert_browser_error(browser, r, "upwork_error")
    assert failures(running)[-1]["reason"] == "upwork error: server_error"


def test_code_missing(running: RunningApp) -> None:
    browser = running.browser()
    params = callback_params(browser.decide(browser.start_sign_in()))
    r = browser.get("/api/auth/upwork/callback", params={"state": params["state"]})
    assert_browser_error(browser, r, "code_missing")


FAULTS = [
    # (id, sandbox faults, expected code, API status)
    ("token-500", {"token_status": 500}, "token_exchange_failed", 502),
    ("token-non-json", {"token_non_json": True}, "token_exchange_failed", 502),
    ("token-timeout", {"token_delay": 2.0}, "upwork_unavailable", 503),
    ("graphql-errors", {"graphql_errors": True}, "profile_fetch_failed", 502),
    ("graphql-500", {"graphql_status": 500}, "profile_fetch_failed", 502),
    ("graphql-401", {"graphql_status": 401}, "upwork_unauthorized", 502),
    ("graphql-429", {"graphql_status": 429}, "upwork_rate_limited", 503),
    ("profile-missing-id", {"user_patch": {"id": None}}, "invalid_profile", 502),
    ("profile-malformed-id", {"user_patch": {"id": "<img src=x>"}}, "invalid_profile", 502),
    ("profile-10kb-name", {"user_patch": {"name": "N" * 10240}}, "invalid_profile", 502),
]


@pytest.mark.parametrize(
    ("faults", "code", "status"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS]
)
@pytest.mark.parametrize("client", ["browser", "api"])
def test_upwork_faults(
    app_factory: AppFactory,
    caplog: pytest.LogCaptureFixture,
    faults: dict[str, Any],
    code: str,
    status: int,
    client: str,
) -> None:
    caplog.set_level(logging.INFO)
    app = app_factory(upwork_http_timeout=1.0)  # the 2 s delay times out, nothing else
    app.faults(**faults)
    browser = app.browser()
    callback = browser.decide(browser.start_sign_in(), SANDBOX_USERS["alex"])
    if client == "browser":
        assert_browser_error(browser, browser.get(callback), code)
    else:
        r = browser.get(callback, headers={"Accept": "application/json"})
        assert r.status_code == status, r.text
        assert r.json() == {"error": code, "message": reason(code).message}
    assert_nothing_written(app)
    assert failures(app)[-1]["reason_code"] == code
    params = callback_params(callback)
    secrets = [
        params["code"],
        params["state"],
        *app.sandbox_state.access_tokens,
        *app.sandbox_state.refresh_tokens,
    ]
    for secret in secrets:
        assert secret not in caplog.text


def test_unknown_error_code_on_page_gets_generic_message(running: RunningApp) -> None:
    page = running.browser().get("/?" + urlencode({"error": "<script>x</script>"}))
    assert page.status_code == 200
    assert "<script>x" not in page.text
    assert "Sign-in did not complete" in page.text


def test_upwork_unreachable(app_factory: AppFactory) -> None:
    """Upwork's token endpoint is down entirely (connection refused)."""
    from .helpers import bound_socket

    dead = bound_socket()  # bound, never listening: connections are refused
    port = dead.getsockname()[1]
    app = app_factory(
        upwork_client_id="cid",
        upwork_client_secret="csecret",
        upwork_authorize_url=f"http://127.0.0.1:{port}/authorize",
        upwork_token_url=f"http://127.0.0.1:{port}/token",
        upwork_graphql_url=f"http://127.0.0.1:{port}/graphql",
    )
    browser = app.browser()
    r = browser.get("/api/auth/upwork/authorize", params={"redirect": "true"})
    state = callback_params(r.headers["location"])["state"]
    result = browser.get("/api/auth/upwork/callback", params={"code": "c", "state": state})
    assert_browser_error(browser, result, "upwork_unavailable")
    dead.close()


def test_unused_code_injected_into_another_flow_is_rejected(running: RunningApp) -> None:
    """RFC 9700 4.5: a stolen, still unused code fails in the attacker's own flow (PKCE)."""
    victim = running.browser()
    stolen = callback_params(victim.decide(victim.start_sign_in(), SANDBOX_USERS["olena"]))
    attacker = running.browser()
    own = callback_params(attacker.decide(attacker.start_sign_in(), SANDBOX_USERS["alex"]))
    r = attacker.get(
        "/api/auth/upwork/callback", params={"code": stolen["code"], "state": own["state"]}
    )
    assert_browser_error(attacker, r, "code_rejected")
    assert_nothing_written(running)
