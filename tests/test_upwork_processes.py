"""Several processes on one SQLite file, against a standalone sandbox over HTTP: one refresh
for many concurrent requests, one scheduled sync per user, keep-alive refreshes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .conftest import SANDBOX_USERS, External, extra_users
from .helpers import rows
from .upwork_helpers import connection_row, expire_access, sign_in, sqlite_time

CLI = str(Path(sys.executable).parent / "upwork-assistant")
RACE = str(Path(__file__).parent / "scripts" / "vault_race.py")


def test_two_processes_fifty_requests_one_refresh(external: External) -> None:
    _, user_id = sign_in(external.app, SANDBOX_USERS["olena"])
    expire_access(external.app.db_path, user_id)
    start_at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, RACE, user_id, "25", start_at],
            env=external.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("ok=25" in out for out in outputs)
    assert external.sandbox.state.stats["token_refresh"] == 1
    assert connection_row(external.app.db_path, user_id)["refresh_lease_owner"] is None


def test_two_workers_sync_each_user_once(external: External) -> None:
    users = [u.id for u in extra_users(20)]
    for upwork_id in users:
        sign_in(external.app, upwork_id)
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    rows(external.app.db_path, "UPDATE users SET profile_synced_at=?", old)
    before = external.sandbox.state.stats["graphql_requests"]

    procs = [
        subprocess.Popen(
            [CLI, "worker", "--once"],
            env=external.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs

    synced = rows(
        external.app.db_path,
        "SELECT user_id, count(*) FROM profile_syncs "
        "WHERE trigger='scheduled' AND succeeded GROUP BY user_id",
    )
    assert len(synced) == 20 and all(n == 1 for _, n in synced)
    assert external.sandbox.state.stats["graphql_requests"] - before == 20
    total = sum(int(out.split("synced ")[1].split()[0]) for out in outputs)
    assert total == 20

    # A second pass right after finds nothing due.
    again = subprocess.run(
        [CLI, "worker", "--once"], env=external.env, capture_output=True, text=True, timeout=120
    )
    assert "synced 0 users" in again.stdout


def test_worker_keeps_idle_connections_alive(external: External) -> None:
    _, idle = sign_in(external.app, SANDBOX_USERS["alex"])
    _, fresh = sign_in(external.app, SANDBOX_USERS["olena"])
    soon = sqlite_time(datetime.now(UTC) + timedelta(days=1))
    rows(
        external.app.db_path,
        "UPDATE upwork_connections SET refresh_expires_at=? WHERE user_id=?",
        soon,
        idle,
    )
    before_fresh = connection_row(external.app.db_path, fresh)

    result = subprocess.run(
        [CLI, "worker", "--once"], env=external.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "renewed 1 connections" in result.stdout
    assert external.sandbox.state.stats["token_refresh"] == 1
    renewed = connection_row(external.app.db_path, idle)
    assert renewed["refresh_expires_at"] > sqlite_time(datetime.now(UTC) + timedelta(days=13))
    assert connection_row(external.app.db_path, fresh) == before_fresh
