"""Several processes on one SQLite file, against a standalone sandbox over HTTP: one refresh
for many concurrent requests, the 24-hour purge by several workers, keep-alive refreshes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from upwork_assistant.config import new_encryption_key_spec

from .fixtures import SANDBOX_USERS, External, extra_users
from .helpers import rows
from .test_cli import free_port, process, wait_for
from .upwork_helpers import connection_row, expire_access, sign_in, sqlite_time

CLI = str(Path(sys.executable).parent / "upwork-assistant")
RACE = str(Path(__file__).parent / "scripts" / "vault_race.py")


def test_two_processes_fifty_requests_one_refresh(external: External) -> None:
    # This test is about the single refresh, not Upwork's per-IP limit.
    external.sandbox.faults(ip_rate_limit=0)
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


def test_two_workers_purge_stale_content_and_fetch_nothing(external: External) -> None:
    """Upwork content past its 24 hours is deleted by whichever worker gets there; no
    worker fetches it again on a timer (Upwork's terms; it comes back on use)."""
    users = [u.id for u in extra_users(20)]
    for upwork_id in users:
        sign_in(external.app, upwork_id)
    old = sqlite_time(datetime.now(UTC) - timedelta(days=2))
    rows(
        external.app.db_path, "UPDATE users SET identity_fetched_at=?, email_fetched_at=?", old, old
    )
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
    left = rows(
        external.app.db_path,
        "SELECT count(*) FROM users WHERE name IS NOT NULL OR upwork_nid IS NOT NULL "
        "OR identity_fetched_at IS NOT NULL",
    )
    assert left[0][0] == 0
    assert rows(external.app.db_path, "SELECT count(*) FROM users")[0][0] == 20
    assert external.sandbox.state.stats["graphql_requests"] == before
    # The command's own summary ("renewed N connections, purged M stale ..."), not the
    # log lines about the purge that go to the same output.
    summaries = [re.search(r"connections, purged (\d+) ", out) for out in outputs]
    assert all(summaries), outputs
    total = sum(int(found[1]) for found in summaries if found)
    assert total == 40  # two groups each: the identity and the email


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


def test_metrics_add_up_every_serve_process(external: External, tmp_path: Path) -> None:
    """`serve --workers 2`: whichever process answers /metrics, it reports the requests
    of both (Prometheus multiprocess mode), and the upkeep is left to `worker`."""
    port = free_port()
    token = "t" * 32
    env = {
        **external.env,
        "APP_BASE_URL": f"http://127.0.0.1:{port}",
        "METRICS_TOKEN": token,
        "DATA_DIR": str(tmp_path),  # the multiprocess files go under it
        "SECRET_KEY": "s" * 40,
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key_spec(),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    db = tmp_path / "metrics.db"
    env["DATABASE_URL"] = f"sqlite:///{db}"
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
    with process(["serve", "--port", str(port), "--workers", "2"], env, tmp_path) as proc:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(30):
                client.get("/healthz", headers={"Connection": "close"})
            totals = set()
            for _ in range(6):
                text = client.get(
                    "/metrics", headers={"Authorization": f"Bearer {token}", "Connection": "close"}
                ).text
                line = next(
                    row
                    for row in text.splitlines()
                    if row.startswith('http_requests_total{method="GET",route="/healthz"')
                )
                totals.add(float(line.rsplit(" ", 1)[1]))
    assert totals == {31.0}  # the 30 above and wait_for's first
    assert list((tmp_path / "prometheus").glob("*.db"))
