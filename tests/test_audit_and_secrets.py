"""The security log covers every column, and secrets stay out of logs, files and tokens."""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from upwork_assistant.db.models import AuditChainHead, AuditEvent
from upwork_assistant.sandbox.state import Faults, default_users
from upwork_assistant.security import audit
from upwork_assistant.services import Services

from .fixtures import SANDBOX_USERS, AppFactory, RunningApp
from .helpers import Browser, rows
from .test_mfa import code_at, enable_mfa
from .test_security_log import cli, verify, with_services
from .test_signin_faults import FAULTS
from .upwork_helpers import JSON, csrf_headers, expire_access, sign_in, sync

# ----- item 8: the audit chain covers every column --------------------------------------


def delete_olena_keep_alex(app: RunningApp) -> tuple[str, int, int]:
    """Olena's account is deleted (her records anonymised); Alex stays. Returns Alex's id,
    one of Olena's anonymised record ids and one of Alex's live record ids."""
    olena, _ = sign_in(app, SANDBOX_USERS["olena"])
    _, alex_id = sign_in(app, SANDBOX_USERS["alex"])
    r = olena.client.delete("/api/account", headers=csrf_headers(olena))
    assert r.status_code == 200
    anonymised = rows(
        app.db_path, "SELECT min(id) FROM audit_events WHERE anonymised_at IS NOT NULL"
    )[0][0]
    live = rows(app.db_path, "SELECT min(id) FROM audit_events WHERE user_id=?", alex_id)[0][0]
    assert anonymised and live
    report = verify(app)
    assert report.ok, report.problems
    return alex_id, anonymised, live


def test_anonymisation_is_a_chained_record(running: RunningApp) -> None:
    _, anonymised, _ = delete_olena_keep_alex(running)
    markers = rows(
        running.db_path,
        "SELECT id, created_at FROM audit_events WHERE event_type='audit.anonymised'",
    )
    assert len(markers) == 1
    stamped = rows(
        running.db_path,
        "SELECT DISTINCT anonymised_at FROM audit_events WHERE anonymised_at IS NOT NULL",
    )
    assert len(stamped) == 1 and str(stamped[0][0])[:19] == str(markers[0][1])[:19]
    assert rows(
        running.db_path, "SELECT user_id, ip FROM audit_events WHERE id=?", markers[0][0]
    ) == [(None, None)]
    assert anonymised < markers[0][0]


@pytest.mark.parametrize(
    "column, value",
    [
        ("ip", "'203.0.113.7'"),
        ("user_agent", "'curl/8.0'"),
        ("session_id", "'00000000-0000-0000-0000-000000000000'"),
        ("user_id", "(SELECT id FROM users LIMIT 1)"),
        ("anonymised_at", "'2020-01-01 00:00:00.000000'"),
        ("anonymised_at", "NULL"),
    ],
)
def test_any_edit_of_an_anonymised_record_is_detected(
    running: RunningApp, column: str, value: str
) -> None:
    _, anonymised, _ = delete_olena_keep_alex(running)
    rows(
        running.db_path,
        f"UPDATE audit_events SET {column}={value} WHERE id=?",  # noqa: S608
        anonymised,
    )
    problems = verify(running).problems
    assert any(p.startswith(f"record {anonymised}:") for p in problems), problems
    assert cli(running, "audit", "verify").returncode == 1


def test_blanking_a_live_users_record_as_if_anonymised_is_detected(running: RunningApp) -> None:
    # Someone with write access erases who did something, dressed up as an anonymisation.
    _, _, live = delete_olena_keep_alex(running)
    rows(
        running.db_path,
        "UPDATE audit_events SET user_id=NULL, session_id=NULL, ip=NULL, user_agent=NULL, "
        "anonymised_at=(SELECT anonymised_at FROM audit_events WHERE anonymised_at IS NOT NULL "
        "LIMIT 1) WHERE id=?",
        live,
    )
    problems = verify(running).problems
    assert any(p.startswith(f"record {live}:") for p in problems), problems


@pytest.mark.parametrize(
    "column, value",
    [
        ("id", "id + 1000"),
        ("created_at", "'2020-01-01 00:00:00.000000'"),
        ("event_type", "'rate_limit.hit'"),
        ("user_id", "NULL"),
        ("session_id", "NULL"),
        ("ip", "'198.51.100.1'"),
        ("user_agent", "'forged'"),
        ("details", "'{\"x\": 1}'"),
        ("prev_hash", "'" + "1" * 64 + "'"),
        ("chain_hash", "'" + "2" * 64 + "'"),
        ("pii_digest", "'" + "3" * 64 + "'"),
        ("anonymised_at", "'2020-01-01 00:00:00.000000'"),
    ],
)
def test_any_edit_of_the_newest_live_record_is_detected(
    running: RunningApp, column: str, value: str
) -> None:
    # The newest record: no later record's prev_hash betrays an edit of it, so only its own
    # chained fields can (an id moved past the end used to pass unseen).
    alex, _ = sign_in(running, SANDBOX_USERS["alex"])
    r = alex.client.post("/api/auth/logout", headers=csrf_headers(alex))
    assert r.status_code in (200, 204)
    newest = rows(running.db_path, "SELECT max(id) FROM audit_events")[0][0]
    assert verify(running).ok
    rows(
        running.db_path,
        f"UPDATE audit_events SET {column}={value} WHERE id=?",  # noqa: S608
        newest,
    )
    assert not verify(running).ok


def test_records_from_before_version_2_still_verify(running: RunningApp) -> None:
    """Data written by the previous release (version 1 records, anonymised without a
    chained record) keeps verifying; new records chain on in version 2."""
    delete_olena_keep_alex(running)

    async def rewrite_as_version_1(svc: Services) -> int:
        # What the previous release would have written: v1 hashes, no anonymisation marker.
        key = svc.keys.audit_chain
        async with svc.db.write() as db:
            events = list((await db.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())
            prev = audit.GENESIS
            kept = [e for e in events if e.event_type != audit.AUDIT_ANONYMISED]
            for e in events:
                if e.event_type == audit.AUDIT_ANONYMISED:
                    await db.delete(e)
            for e in kept:
                e.prev_hash = prev
                e.chain_hash = audit.chain_hash(key, prev, e, e.pii_digest, 1)
                prev = e.chain_hash
            await db.execute(
                update(AuditChainHead)
                .where(AuditChainHead.id == 1)
                .values(last_event_id=kept[-1].id, last_hash=prev)
            )
            return len(kept)

    legacy = with_services(running, rewrite_as_version_1)
    report = verify(running)
    assert report.ok, report.problems
    assert report.legacy == legacy
    sign_in(running, SANDBOX_USERS["html"])  # version 2 records chain on from a v1 head
    report = verify(running)
    assert report.ok, report.problems
    assert report.legacy == legacy and report.records > legacy
    result = cli(running, "audit", "verify")
    assert result.returncode == 0, result.stdout

    # A version 1 record is still checked: its who/where fields and content.
    first_live = rows(
        running.db_path, "SELECT min(id) FROM audit_events WHERE anonymised_at IS NULL"
    )[0][0]
    rows(running.db_path, "UPDATE audit_events SET ip='192.0.2.1' WHERE id=?", first_live)
    assert not verify(running).ok


def test_anonymising_many_records_covers_them_all(running: RunningApp) -> None:
    """More records than one UPDATE batch, interleaved with another user's."""
    olena, olena_id = sign_in(running, SANDBOX_USERS["olena"])
    _, alex_id = sign_in(running, SANDBOX_USERS["alex"])

    async def add_events(svc: Services) -> None:
        async with svc.db.write() as db:
            for i in range(1200):
                await audit.record(
                    db,
                    audit.RATE_LIMIT_HIT,
                    audit.RequestMeta(ip="192.0.2.9", user_agent="t"),
                    user_id=olena_id if i % 3 else alex_id,
                )

    with_services(running, add_events)
    r = olena.client.delete("/api/account", headers=csrf_headers(olena))
    assert r.status_code == 200
    assert (
        rows(
            running.db_path,
            "SELECT count(*) FROM audit_events WHERE ip='192.0.2.9' AND anonymised_at IS NULL",
        )[0][0]
        == 400
    )
    details: Any = rows(
        running.db_path, "SELECT details FROM audit_events WHERE event_type='audit.anonymised'"
    )
    assert details
    report = verify(running)
    assert report.ok, report.problems


# ----- deleted data leaves the disk (SQLite) --------------------------------------------


def test_deleted_account_leaves_nothing_in_any_database_file(app_factory: AppFactory) -> None:
    """Every file SQLite writes (main, -wal, -shm; after a checkpoint, free pages and stale
    WAL frames included) is free of the deleted user's data. On PostgreSQL deleted tuples
    stay on disk until VACUUM reclaims them (docs/security.md): there this checks what a
    query of every table returns."""
    app = app_factory(sandbox_scopes="all")
    others = [sign_in(app, SANDBOX_USERS[who]) for who in ("alex", "noemail")]
    olena, olena_id = sign_in(app, SANDBOX_USERS["olena"])
    sign_in(app, SANDBOX_USERS["html"])
    secret, backup_codes = enable_mfa(olena)
    sandbox = app.sandbox_state
    olenas_tokens = [
        token
        for table in (sandbox.access_tokens, sandbox.refresh_tokens)
        for token, grant in table.items()
        if grant.user_id == SANDBOX_USERS["olena"]
    ]
    assert olenas_tokens
    profile = next(u for u in default_users() if u.id == SANDBOX_USERS["olena"])
    before = app.db_path.read_bytes()
    assert profile.graphql_name.encode() in before and profile.email.encode() in before

    r = olena.client.request(
        "DELETE", "/api/account", headers=csrf_headers(olena), json={"code": code_at(secret, 1)}
    )
    assert r.status_code == 200, r.text
    raw = app.db_path.read_bytes()
    for gone in [
        profile.graphql_name,
        profile.email,
        profile.nid,
        profile.id,
        olena_id,
        secret,
        *olenas_tokens,
        *(code.replace("-", "") for code in backup_codes),
    ]:
        assert gone.encode() not in raw, gone
    # The others' data is all still there.
    assert b"alex" in raw.lower() and all(
        o.get("/api/auth/me", headers=JSON).status_code == 200 for o, _ in others
    )


# ----- no secret of any kind reaches a log line -----------------------------------------


def test_no_secret_of_any_kind_reaches_any_log_line(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Sign-in, refresh, MFA (setup, verify, backup codes, sign-in with a backup code), a
    sync that refreshes Upwork's token, and every sandbox fault switch of the sign-in fault
    suite; then no collected secret is in any captured log record (the app's JSON lines,
    uvicorn's access log, libraries' logs), at DEBUG."""
    caplog.set_level(logging.DEBUG)
    app = app_factory(upwork_http_timeout=1.0)  # the 2 s delay times out, nothing else
    secrets: set[str] = {
        app.settings.secrets.secret_key,
        app.settings.oauth_client_secret,
        *(spec.split(":", 1)[1] for spec in app.settings.secrets.token_encryption_keys.split(",")),
    }

    def ours(browser: Browser) -> None:
        for name in ("access_token", "refresh_token"):
            for cookie in browser.client.cookies.jar:
                if cookie.name == name and cookie.value:
                    secrets.add(cookie.value)

    def sign_in_collecting(browser: Browser, who: str) -> httpx.Response:
        callback = browser.decide(browser.start_sign_in(), SANDBOX_USERS[who])
        params = dict(httpx.URL(callback).params)
        secrets.update(v for k, v in params.items() if k in ("code", "state"))
        return browser.get(callback)

    # Sign-in and our refresh.
    browser = app.browser()
    assert sign_in_collecting(browser, "olena").headers["location"] == "/"
    ours(browser)
    user_id = browser.get("/api/auth/me", headers=JSON).json()["id"]
    r = browser.post("/api/auth/refresh", headers=csrf_headers(browser))
    assert r.status_code == 200, r.text
    ours(browser)

    # MFA: setup, verify, regenerate backup codes, sign in with a backup code.
    totp_secret, backup = enable_mfa(browser)
    secrets.update([totp_secret, *backup, *(c.replace("-", "") for c in backup)])
    regen = browser.post(
        "/api/security/mfa/backup-codes", headers=csrf_headers(browser), json={"code": backup[0]}
    )
    assert regen.status_code == 200, regen.text
    fresh = regen.json()["backup_codes"]
    secrets.update([*fresh, *(c.replace("-", "") for c in fresh)])
    browser.post("/api/auth/logout", headers=csrf_headers(browser))
    assert sign_in_collecting(browser, "olena").headers["location"] == "/mfa"
    r = browser.post("/api/auth/mfa", json={"code": fresh[0]}, headers=JSON)
    assert r.status_code == 200, r.text
    ours(browser)

    # A sync that has to refresh Upwork's access token first.
    expire_access(app.db_path, user_id)
    assert sync(browser).status_code == 200
    ours(browser)

    # Every fault switch of the sign-in fault suite (the 429 last: it blocks Upwork calls).
    defaults = asdict(Faults())
    for _name, faults, _code, _status in sorted(FAULTS, key=lambda f: "429" in f[0]):
        app.faults(**faults)
        for accept in ("text/html", "application/json"):
            other = app.browser()
            callback = other.decide(other.start_sign_in(), SANDBOX_USERS["alex"])
            secrets.update(
                v for k, v in httpx.URL(callback).params.items() if k in ("code", "state")
            )
            assert other.get(callback, headers={"Accept": accept}).status_code >= 300
        app.faults(**{k: defaults[k] for k in faults})

    sandbox = app.sandbox_state
    secrets.update(sandbox.codes, sandbox.access_tokens, sandbox.refresh_tokens)
    secrets.discard("")
    assert len(secrets) > 40

    # Only what the server logged: this thread's records are the test's own HTTP client
    # (httpcore, at DEBUG, logs the Set-Cookie and Location headers it receives).
    me = threading.get_ident()
    records = [r for r in caplog.records if r.thread != me]
    assert any(r.name == "uvicorn.access" for r in records), "access log not captured"
    assert any(r.name == "upwork_assistant.audit" for r in records)
    assert any(r.name.startswith("httpcore") for r in records)  # the app's calls to Upwork
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in records)
    leaked = sorted({r.name for r in records for s in secrets if s in r.getMessage()})
    assert not leaked and not any(s in text for s in secrets), f"secrets logged by {leaked}"
