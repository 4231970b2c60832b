"""The security log: hash chain, signed checkpoints, verify, retention, logs API, admin.

What needs no command-line process runs in-process (the app through httpx.ASGITransport);
the tests that run `upwork-assistant` as a subprocess stay on the real tier."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from upwork_assistant.db.types import utcnow
from upwork_assistant.security import audit
from upwork_assistant.services import Services

from .fixtures import SANDBOX_USERS, InProcessApp, RunningApp
from .helpers import rows
from .upwork_helpers import JSON, sign_in, sign_in_inprocess

CLI = str(Path(sys.executable).parent / "upwork-assistant")


def cli_env(app: RunningApp) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPWORK_", "APP_", "DATABASE_", "SECRET_", "TOKEN_"))
    }
    env.update(
        {
            "DATA_DIR": str(app.settings.data_dir),
            "DATABASE_URL": app.db_path.url,
            "APP_BASE_URL": app.url,
        }
    )
    return env


def cli(app: RunningApp, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CLI, *args], env=cli_env(app), capture_output=True, text=True, timeout=120
    )
    # The command may have changed a user (promote, block): as after the tests' own writes,
    # the app here forgets at once rather than race the trigger's notice on PostgreSQL
    # (the notices themselves are tested in test_session_cache.py).
    for hook in app.db_path.after_write:
        hook()
    return done


def verify(app: RunningApp) -> audit.VerifyReport:
    async def run() -> audit.VerifyReport:
        svc = Services.build(app.settings)
        try:
            async with svc.db.session() as db:
                return await audit.verify(db, svc.keys.audit_chain, svc.keys.audit_signing_key)
        finally:
            await svc.aclose()

    return asyncio.run(run())


def with_services(app: RunningApp, work):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        svc = Services.build(app.settings)
        try:
            return await work(svc)
        finally:
            await svc.aclose()

    return asyncio.run(run())


def make_activity(app: RunningApp) -> None:
    for who in ("alex", "olena", "noemail"):
        sign_in(app, SANDBOX_USERS[who])


async def verify_inprocess(app: InProcessApp) -> audit.VerifyReport:
    """:func:`verify` for the in-process tier (on the test's own event loop)."""
    svc = Services.build(app.settings)
    try:
        async with svc.db.session() as db:
            return await audit.verify(db, svc.keys.audit_chain, svc.keys.audit_signing_key)
    finally:
        await svc.aclose()


async def with_services_inprocess(app: InProcessApp, work):  # type: ignore[no-untyped-def]
    """:func:`with_services` for the in-process tier."""
    svc = Services.build(app.settings)
    try:
        return await work(svc)
    finally:
        await svc.aclose()


async def make_activity_inprocess(app: InProcessApp) -> None:
    for who in ("alex", "olena", "noemail"):
        await sign_in_inprocess(app, SANDBOX_USERS[who])


def test_chain_is_valid_and_verify_command_says_so(running: RunningApp) -> None:
    make_activity(running)
    assert cli(running, "audit", "checkpoint").returncode == 0
    result = cli(running, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: no record was edited, inserted or deleted" in result.stdout
    report = verify(running)
    assert report.ok and report.records >= 9 and report.checkpoints == 1


def test_edit_is_detected(running: RunningApp) -> None:
    make_activity(running)
    target = rows(running.db_path, "SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 3")
    rows(
        running.db_path,
        "UPDATE audit_events SET details='{\"forged\": 1}' WHERE id=?",
        target[0][0],
    )
    result = cli(running, "audit", "verify")
    assert result.returncode == 1
    assert f"record {target[0][0]}: edited or forged" in result.stdout


@pytest.mark.inprocess
async def test_who_fields_edit_is_detected(inprocess: InProcessApp) -> None:
    running = inprocess
    await make_activity_inprocess(running)
    rows(running.db_path, "UPDATE audit_events SET ip='10.9.9.9' WHERE id=2")
    assert any(
        "who/where fields were edited" in p for p in (await verify_inprocess(running)).problems
    )


@pytest.mark.inprocess
async def test_deletion_is_detected(inprocess: InProcessApp) -> None:
    running = inprocess
    await make_activity_inprocess(running)
    rows(running.db_path, "DELETE FROM audit_events WHERE id=3")
    problems = (await verify_inprocess(running)).problems
    assert any(p.startswith("record 4: the record before it was deleted") for p in problems)


@pytest.mark.inprocess
async def test_insertion_is_detected(inprocess: InProcessApp) -> None:
    running = inprocess
    await make_activity_inprocess(running)
    _prev, chain = rows(
        running.db_path, "SELECT prev_hash, chain_hash FROM audit_events WHERE id=2"
    )[0]
    rows(
        running.db_path,
        "INSERT INTO audit_events (id, created_at, event_type, details, prev_hash, chain_hash, "
        "pii_digest) VALUES (100000, '2026-01-01 00:00:00.000000', 'signin.succeeded', '{}', ?, ?, "
        "'')",
        chain,
        "f" * 64,
    )
    assert any("edited or forged" in p for p in (await verify_inprocess(running)).problems)


def test_tail_deletion_after_a_checkpoint_is_detected(running: RunningApp) -> None:
    make_activity(running)
    cli(running, "audit", "checkpoint")
    rows(running.db_path, "DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)")
    assert any("were deleted" in p for p in verify(running).problems)


def test_forged_checkpoint_is_detected(running: RunningApp) -> None:
    make_activity(running)
    cli(running, "audit", "checkpoint")
    rows(running.db_path, "UPDATE audit_checkpoints SET signature=?", "00" * 64)
    assert any("invalid signature" in p for p in verify(running).problems)


@pytest.mark.inprocess
async def test_retention_prunes_at_a_checkpoint_and_verification_still_holds(
    inprocess: InProcessApp,
) -> None:
    running = inprocess
    await make_activity_inprocess(running)

    async def checkpoint_then_prune(svc: Services) -> int:
        async with svc.db.write() as db:
            await audit.checkpoint(db, svc.keys.audit_signing_key)
        sign_more = rows(running.db_path, "SELECT max(id) FROM audit_events")[0][0]
        async with svc.db.write() as db:
            pruned = await audit.prune(db, utcnow() + audit.timedelta(seconds=1))
        return pruned if sign_more else 0

    first_count = rows(running.db_path, "SELECT count(*) FROM audit_events")[0][0]
    pruned = await with_services_inprocess(running, checkpoint_then_prune)
    assert pruned == first_count
    # new records chain on from the anchor
    await sign_in_inprocess(running, SANDBOX_USERS["html"])
    report = await verify_inprocess(running)
    assert report.ok, report.problems
    assert report.records == rows(running.db_path, "SELECT count(*) FROM audit_events")[0][0]


def test_worker_pass_signs_and_prunes(running: RunningApp) -> None:
    make_activity(running)
    result = cli(running, "worker", "--once")
    assert result.returncode == 0, result.stderr
    assert rows(running.db_path, "SELECT count(*) FROM audit_checkpoints")[0][0] == 1
    # Nothing is old enough to prune with the default 90 days.
    assert rows(running.db_path, "SELECT count(*) FROM audit_events")[0][0] > 0


@pytest.mark.inprocess
async def test_events_are_json_log_lines_too(
    inprocess: InProcessApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "upwork_assistant.audit"
    ]
    assert {"account.created", "session.created", "signin.succeeded"} <= {
        line["event"] for line in lines
    }
    assert all("timestamp" in line and "level" in line for line in lines)


@pytest.mark.inprocess
async def test_own_logs_filtered_and_paginated(inprocess: InProcessApp) -> None:
    running = inprocess
    alex, _ = await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    await sign_in_inprocess(running, SANDBOX_USERS["alex"])
    olena, _ = await sign_in_inprocess(running, SANDBOX_USERS["olena"])
    mine = (await alex.get("/api/security/logs", headers=JSON)).json()
    types = [e["type"] for e in mine["items"]]
    assert "account.created" in types and types.count("signin.succeeded") == 2
    assert all("user_id" not in e for e in mine["items"])
    olenas = (await olena.get("/api/security/logs", headers=JSON)).json()["items"]
    assert {e["id"] for e in olenas}.isdisjoint({e["id"] for e in mine["items"]})

    only = (
        await alex.get("/api/security/logs", params={"type": "session.created"}, headers=JSON)
    ).json()["items"]
    assert [e["type"] for e in only] == ["session.created", "session.created"]
    page1 = (await alex.get("/api/security/logs", params={"limit": 2}, headers=JSON)).json()
    assert len(page1["items"]) == 2 and page1["next_before"]
    page2 = (
        await alex.get(
            "/api/security/logs", params={"limit": 2, "before": page1["next_before"]}, headers=JSON
        )
    ).json()
    assert page2["items"] and max(e["id"] for e in page2["items"]) < min(
        e["id"] for e in page1["items"]
    )
    future = (
        await alex.get("/api/security/logs", params={"since": "2999-01-01T00:00:00Z"}, headers=JSON)
    ).json()
    assert future["items"] == []
    bad = await alex.get("/api/security/logs", params={"limit": 0}, headers=JSON)
    assert bad.status_code == 422
