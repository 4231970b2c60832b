"""The product against a sandbox that behaves as Upwork does (the strict defaults): scopes
fixed on the key, abbreviated names, refresh with body credentials and the old refresh
token's 24 hours, authentication errors inside a 200, the per-IP block, and the 24-hour
content cache. Everything over HTTP, in-process (the app through httpx.ASGITransport, its
calls to the sandbox too) but for the per-IP block's second server, on the real tier; the
sandbox counts what reaches it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from upwork_assistant.sandbox.state import IpRateLimiter

from .fixtures import SANDBOX_USERS, AppFactory, InProcessApp, InProcessFactory, RunningApp
from .helpers import rows
from .upwork_helpers import (
    JSON,
    age_content,
    audit_events,
    connection_row,
    expire_access,
    sandbox_refresh_inprocess,
    sign_in,
    sign_in_inprocess,
    stored_tokens,
    sync,
    sync_inprocess,
    wait_until_inprocess,
)


def stats(app: RunningApp) -> dict[str, int]:
    return dict(httpx.get(f"{app.url}/sandbox/upwork/_sandbox/stats").json())


async def stats_inprocess(app: InProcessApp) -> dict[str, int]:
    """:func:`stats` for the in-process tier."""
    return dict((await app.client().get("/sandbox/upwork/_sandbox/stats")).json())


def user_row(app: RunningApp | InProcessApp, user_id: str, *columns: str) -> dict[str, object]:
    values = rows(app.db_path, f"SELECT {', '.join(columns)} FROM users WHERE id=?", user_id)[0]  # noqa: S608
    return dict(zip(columns, values, strict=True))


# ----- scopes ---------------------------------------------------------------------------


@pytest.mark.inprocess
async def test_sign_in_without_email_scope_degrades(inprocess: InProcessApp) -> None:
    """The default key (Common Entities only): sign-in works, email and organization are
    not held, and the dashboard and the API say what the key does not grant."""
    running = inprocess
    browser, _user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    me = (await browser.get("/api/auth/me", headers=JSON)).json()
    assert me["email"] is None and me["name"] == "Alex M."
    conn = (await browser.get("/api/upwork/connection", headers=JSON)).json()
    assert "CurrentUser.email" in conn["grants"]["missing_fields"]
    assert "email" in conn["grants"]["missing_features"]
    assert "organization" in conn["grants"]["missing_features"]
    assert "upwork check" in conn["grants"]["message"]
    assert conn["organization_id"] is None
    page = (await browser.get("/")).text
    assert "does not grant access to" in page and "email address" in page
    # Upwork's own words are in the log of the sign-in, never a token.
    assert (await stats_inprocess(running))["scope_errors"] == 1


@pytest.mark.inprocess
async def test_sign_in_with_every_scope_is_one_request(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(sandbox_scopes="all")
    browser, _user_id = await sign_in_inprocess(app, SANDBOX_USERS["olena"])
    me = (await browser.get("/api/auth/me", headers=JSON)).json()
    assert me["email"] == "olena.kovalenko@example.com"
    conn = (await browser.get("/api/upwork/connection", headers=JSON)).json()
    assert conn["grants"]["missing_fields"] == [] and conn["grants"]["message"] is None
    assert conn["organization_id"] == "1717171717171717102"
    assert (await stats_inprocess(app))["graphql_requests"] == 1


@pytest.mark.inprocess
async def test_sign_in_with_organization_out_of_scope(inprocess: InProcessApp) -> None:
    running = inprocess
    await running.faults(scopes=["common-entities", "user-email"])
    browser, _user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    me = (await browser.get("/api/auth/me", headers=JSON)).json()
    assert me["email"] == "olena.kovalenko@example.com"
    conn = (await browser.get("/api/upwork/connection", headers=JSON)).json()
    assert conn["organization_id"] is None
    assert conn["grants"]["missing_features"] == ["freelancer_profile", "organization"]
    assert "Organization.id" in conn["grants"]["missing_fields"]


@pytest.mark.inprocess
async def test_identity_out_of_scope_fails_sign_in_with_upworks_reason(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    await running.faults(scopes=["user-email"])
    browser = running.browser()
    r = await browser.sign_in(SANDBOX_USERS["alex"])
    assert r.headers["location"] == "/?error=upwork_scope_missing"
    failed = audit_events(running.db_path, "signin.failed")
    assert failed[-1]["reason_code"] == "upwork_scope_missing"
    assert "permissions/scopes" in failed[-1]["upwork_message"]
    assert "CurrentUser.id" in failed[-1]["upwork_message"]
    assert rows(running.db_path, "SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.inprocess
async def test_abbreviated_names_stored_verbatim(inprocess: InProcessApp) -> None:
    running = inprocess
    _browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    assert user_row(running, user_id, "name")["name"] == "Олена К."  # noqa: RUF001


@pytest.mark.inprocess
async def test_sync_remembers_refused_fields_and_asks_once(inprocess: InProcessApp) -> None:
    """After sign-in found what the key refuses, a sync is a single request."""
    running = inprocess
    browser, _user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    before = (await stats_inprocess(running))["graphql_requests"]
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await stats_inprocess(running))["graphql_requests"] == before + 1


# ----- tokens ---------------------------------------------------------------------------


@pytest.mark.inprocess
async def test_refresh_sends_body_credentials_only(inprocess: InProcessApp) -> None:
    """The sandbox refuses HTTP Basic on refresh (as Upwork does): ours still refreshes."""
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    expire_access(running.db_path, user_id)
    assert (await sync_inprocess(browser)).status_code == 200
    assert (await stats_inprocess(running))["token_refresh"] == 1
    assert connection_row(running.db_path, user_id)["status"] == "active"


@pytest.mark.inprocess
async def test_crash_between_rotation_and_commit_recovered_by_old_token(
    inprocess: InProcessApp,
) -> None:
    """Upwork rotated the pair but we died before storing it: the stored (old) refresh
    token still works for 24 hours, so the next refresh recovers the connection."""
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    _, old_refresh = stored_tokens(running, user_id)
    assert old_refresh
    # the answer we "lost" in the crash
    lost = await sandbox_refresh_inprocess(running, old_refresh)
    assert lost.status_code == 200 and lost.json()["refresh_token"] != old_refresh
    expire_access(running.db_path, user_id)
    r = await sync_inprocess(browser)
    assert r.status_code == 200, r.text
    assert connection_row(running.db_path, user_id)["status"] == "active"
    assert stored_tokens(running, user_id)[1] not in (old_refresh, lost.json()["refresh_token"])


@pytest.mark.inprocess
async def test_without_the_grace_the_same_crash_needs_reauth(inprocess: InProcessApp) -> None:
    """The kinder-to-thieves setting off: the sandbox kills the old token at once."""
    running = inprocess
    await running.faults(old_refresh_grace=0)
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    _, old_refresh = stored_tokens(running, user_id)
    assert (await sandbox_refresh_inprocess(running, old_refresh or "")).status_code == 200
    expire_access(running.db_path, user_id)
    assert (await sync_inprocess(browser)).status_code == 409


@pytest.mark.parametrize("status", [401, 200])
@pytest.mark.inprocess
async def test_auth_error_refreshes_once_then_needs_reauth(
    inprocess: InProcessApp, status: int
) -> None:
    """A refused token, as a 401 or inside a 200: one refresh, one retry, then the user
    must reconnect. Never a loop and never a 502."""
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    before = await stats_inprocess(running)
    await running.faults(auth_error_status=status, graphql_status=401)
    r = await sync_inprocess(browser)
    assert r.status_code == 409 and r.json()["error"] == "upwork_reauth_required"
    after = await stats_inprocess(running)
    assert after["token_refresh"] - before.get("token_refresh", 0) == 1
    assert after["graphql_requests"] - before["graphql_requests"] == 2
    assert connection_row(running.db_path, user_id)["status"] == "needs_reauth"
    reauth = audit_events(running.db_path, "upwork.reauth_required")[-1]
    assert reauth["reason"] == "token_rejected" and reauth["upwork_message"]
    # Further calls do not reach Upwork at all.
    assert (await sync_inprocess(browser)).status_code == 409
    assert (await stats_inprocess(running))["graphql_requests"] == after["graphql_requests"]


# ----- the per-IP block -----------------------------------------------------------------


def test_per_ip_block_is_respected_by_every_process(app_factory: AppFactory) -> None:
    """Upwork blocks an IP for a minute after its last rate-limited request and sends no
    Retry-After. Our budget is set far too high here on purpose: the first 429 must stop
    every process of the host from calling Upwork until the minute is over."""
    app = app_factory(upwork_rate_limit="1000/second", profile_sync_rate_limit="1000/minute")
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    app.faults(ip_rate_limit=2, ip_block_seconds=60)
    # The sandbox's clock stands still: on a busy host three syncs could take more than
    # the second Upwork's limit counts over, and never be limited.
    app.sandbox_state.ip_limiter = IpRateLimiter(clock=lambda: 1000.0)
    before = stats(app)
    answers = [sync(browser) for _ in range(15)]
    codes = [r.status_code for r in answers]
    assert codes.count(503) >= 12, codes
    blocked = next(r for r in answers if r.status_code == 503)
    assert blocked.json()["error"] == "upwork_rate_limited"
    assert 50 <= int(blocked.headers["Retry-After"]) <= 60
    after = stats(app)
    reached = after["graphql_requests"] - before["graphql_requests"]
    assert reached <= 4, reached  # a handful, then silence
    assert after["rate_limited"] - before.get("rate_limited", 0) == 1

    # A second server on the same database (another process of the host) holds back too.
    other = app_factory(
        database_url=app.db_path.url,
        data_dir=app.settings.data_dir,  # the same secrets, as processes of one host share
        upwork_rate_limit="1000/second",
    )
    second = other.browser().sign_in(SANDBOX_USERS["olena"])
    assert second.headers["location"] == "/?error=upwork_rate_limited"
    assert stats(app)["token_requests"] == after["token_requests"]
    assert stats(other).get("token_requests", 0) == 0


# ----- the 24-hour content cache --------------------------------------------------------


@pytest.mark.inprocess
async def test_content_purged_after_24_hours_and_fetched_again_on_use(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(
        sandbox_scopes="all", worker_in_serve=None, worker_interval_seconds=0.2
    )
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS["olena"])
    profile = (await browser.get("/api/upwork/profile", headers=JSON)).json()
    assert profile["content"]["state"] == "fresh" and profile["content"]["expires_at"]
    requests_before = (await stats_inprocess(app))["graphql_requests"]

    # In a thread: the worker runs on this event loop, and on SQLite a write here that
    # waited for the worker's transaction would stop the loop the worker commits on.
    await asyncio.to_thread(age_content, app, user_id, 25)
    columns = ("name", "email", "upwork_nid", "photo_url", "profile_key", "identity_fetched_at")
    # The worker inside serve (on by default) purges it without anybody asking.
    await wait_until_inprocess(lambda: user_row(app, user_id, *columns)["name"] is None)
    purged = user_row(app, user_id, *columns)
    assert all(value is None for value in purged.values()), purged
    assert user_row(app, user_id, "upwork_id")["upwork_id"] == SANDBOX_USERS["olena"]
    assert (await stats_inprocess(app))[
        "graphql_requests"
    ] == requests_before  # not re-fetched by a timer

    # The user comes back: "refreshing", then fetched again, once.
    seen = (await browser.get("/api/upwork/profile", headers=JSON)).json()
    assert seen["content"]["state"] == "refreshing" and seen["name"] is None
    await wait_until_inprocess(lambda: user_row(app, user_id, "name")["name"] == "Олена К.")  # noqa: RUF001
    again = (await browser.get("/api/upwork/profile", headers=JSON)).json()
    assert again["content"]["state"] == "fresh" and again["email"]
    assert (await stats_inprocess(app))["graphql_requests"] == requests_before + 1


@pytest.mark.inprocess
async def test_stale_but_unexpired_content_is_kept_until_used(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    age_content(running, user_id, 7)  # past the 6-hour sync interval, within 24 hours
    page = await browser.get("/")
    assert page.status_code == 200 and "Alex M." in page.text
    await wait_until_inprocess(
        lambda: (
            rows(running.db_path, "SELECT count(*) FROM profile_syncs WHERE trigger='stale'")[0][0]
            == 1
        )
    )


@pytest.mark.inprocess
async def test_metrics_count_calls_to_upwork_by_outcome(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(metrics_token="m" * 32)
    _browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])

    async def metrics() -> str:
        auth = {"Authorization": "Bearer " + "m" * 32}
        return (await app.client().get("/metrics", headers=auth)).text

    # A request is counted just after its answer is sent: wait for the last one.
    me_line = 'http_requests_total{method="GET",route="/api/auth/me",status="200"}'

    async def me_counted() -> bool:
        return me_line in await metrics()

    await wait_until_inprocess(me_counted)
    text = await metrics()
    assert 'upwork_calls_total{operation="profile",outcome="scope_error"}' in text
    assert 'upwork_calls_total{operation="token:authorization_code",outcome="ok"}' in text
    assert "upwork_budget_wait_seconds_count" in text
    assert "upwork_token_refreshes_total" in text and "upwork_backoff_until" in text
    # A mounted app's requests count under its prefix, never its own paths or raw URLs.
    assert 'route="/sandbox/upwork/{path}"' in text and 'route="/graphql"' not in text


# ----- PKCE, either way -----------------------------------------------------------------


@pytest.mark.inprocess
async def test_pkce_refused_by_upwork_fails_sign_in_with_its_reason(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    await running.faults(pkce="reject")
    browser = running.browser()
    start = await browser.get("/api/auth/upwork/authorize", params={"redirect": "true"})
    refused = await browser.get(start.headers["location"])  # Upwork sends the browser straight back
    assert refused.status_code == 302 and "error=invalid_request" in refused.headers["location"]
    r = await browser.get(refused.headers["location"])
    assert r.headers["location"] == "/?error=upwork_error"
    failed = audit_events(running.db_path, "signin.failed")[-1]
    assert failed["upwork_message"] == "PKCE is not supported"


@pytest.mark.inprocess
async def test_sign_in_without_pkce_when_the_operator_turns_it_off(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(upwork_use_pkce=False)
    await app.faults(pkce="reject")
    browser = app.browser()
    started = await browser.get("/api/auth/upwork/authorize", params={"redirect": "true"})
    assert "code_challenge" not in started.headers["location"]
    browser2, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])
    assert (await browser2.get("/api/auth/me", headers=JSON)).json()["name"] == "Alex M."


# ----- issue 13: a refresh never overwrites a newer grant; unreadable tokens -------------


@pytest.mark.inprocess
async def test_refresh_in_flight_never_overwrites_a_reconnect(inprocess: InProcessApp) -> None:
    """The user reconnects while a refresh of their old grant is still at Upwork: the
    new grant stays; the old grant's successor is dropped when it comes back."""
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    expire_access(running.db_path, user_id)
    await running.faults(refresh_delay=1.5)
    result: dict[str, int] = {}
    syncing = asyncio.create_task(sync_inprocess(browser))

    async def refresh_at_upwork() -> bool:
        return (await stats_inprocess(running)).get("token_refresh", 0) == 1

    await wait_until_inprocess(refresh_at_upwork)  # at "Upwork" now
    await sign_in_inprocess(running, SANDBOX_USERS["alex"])  # reconnect: a new grant
    reconnected = stored_tokens(running, user_id)
    result.update(code=(await asyncio.wait_for(syncing, 10)).status_code)
    assert result["code"] == 200
    assert stored_tokens(running, user_id) == reconnected
    assert connection_row(running.db_path, user_id)["status"] == "active"


@pytest.mark.inprocess
async def test_unreadable_tokens_need_reconnecting_never_500(inprocess: InProcessApp) -> None:
    running = inprocess
    browser, user_id = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    rows(
        running.db_path,
        "UPDATE upwork_connections SET access_token_ct=? WHERE user_id=?",
        b"damaged ciphertext, not from the key ring",
        user_id,
    )
    r = await sync_inprocess(browser)
    assert r.status_code == 409 and r.json()["error"] == "upwork_reauth_required"
    assert connection_row(running.db_path, user_id)["status"] == "needs_reauth"
    assert audit_events(running.db_path, "upwork.reauth_required")[-1]["reason"] == (
        "token_unreadable"
    )
    conn = (await browser.get("/api/upwork/connection", headers=JSON)).json()
    assert conn["status"] == "needs_reauth"
    assert "Reconnect" in (await browser.get("/")).text
    # Reconnecting stores readable tokens again.
    await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    assert (await sync_inprocess(browser)).status_code == 200


@pytest.mark.inprocess
async def test_syncs_cannot_spend_the_sign_ins_share(inprocess_factory: InProcessFactory) -> None:
    """A user syncing as fast as allowed runs into the day's user share; other people can
    still sign in on the reserve."""
    app = await inprocess_factory(
        sandbox_scopes="all",
        upwork_rate_limit="1000/second;20/day",
        profile_sync_rate_limit="1000/minute",
    )
    await app.faults(ip_rate_limit=0)  # our day budget is the subject, not Upwork's per-IP limit
    browser, _ = await sign_in_inprocess(app, SANDBOX_USERS["alex"])  # 2 calls
    codes = [(await sync_inprocess(browser)).status_code for _ in range(20)]
    assert codes[:16] == [200] * 16 and set(codes[16:]) == {503}  # 90% of 20 = 18 calls
    other, _ = await sign_in_inprocess(app, SANDBOX_USERS["olena"])  # the last 2 calls of the day
    assert (await other.get("/api/auth/me", headers=JSON)).status_code == 200
