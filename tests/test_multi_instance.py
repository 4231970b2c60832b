"""Two real `upwork-assistant serve` processes sharing one database (PostgreSQL + Redis in
the second pass of `make test`, SQLite in the first) and a standalone Upwork sandbox."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .fixtures import (
    REDIS,
    SANDBOX_USERS,
    StandaloneSandbox,
    drop_database,
    flush_redis,
    fresh_database,
)
from .helpers import Browser, TestDb, bound_socket, refused_soon
from .upwork_helpers import JSON, expire_access

CLI = str(Path(sys.executable).parent / "upwork-assistant")


@dataclass
class Cluster:
    a: str
    b: str
    db: TestDb
    sandbox: StandaloneSandbox


def _port() -> int:
    sock = bound_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def cluster(
    tmp_path: Path, migrated_template: Path | str, sandbox_factory: Callable[..., StandaloneSandbox]
) -> Iterator[Cluster]:
    port_a, port_b = _port(), _port()
    base = f"http://127.0.0.1:{port_a}"  # one deployment: one public URL
    sandbox = sandbox_factory([f"{base}/api/auth/upwork/callback"])
    db = fresh_database(migrated_template, tmp_path)
    flush_redis()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPWORK_", "APP_", "DATABASE_", "SECRET_", "TOKEN_", "REDIS_"))
    }
    env.update(
        {
            "APP_BASE_URL": base,
            "DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db.url,
            "UPWORK_CLIENT_ID": sandbox.client_id,
            "UPWORK_CLIENT_SECRET": sandbox.client_secret,
            "UPWORK_AUTHORIZE_URL": f"{sandbox.url}/ab/account-security/oauth2/authorize",
            "UPWORK_TOKEN_URL": f"{sandbox.url}/api/v3/oauth2/token",
            "UPWORK_GRAPHQL_URL": f"{sandbox.url}/graphql",
            "SIGNIN_RATE_LIMIT": "10000/minute",
            "API_RATE_LIMIT": "10000/minute",
            "PROFILE_SYNC_RATE_LIMIT": "10000/minute",
            "UPWORK_RATE_LIMIT": "10000/second",
        }
    )
    if REDIS:
        env["REDIS_URL"] = REDIS
    procs = [
        subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in (port_a, port_b)
    ]
    urls = [f"http://127.0.0.1:{p}" for p in (port_a, port_b)]
    try:
        deadline = time.monotonic() + 30
        for url, proc in zip(urls, procs, strict=True):
            while True:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "serve failed"
                time.sleep(0.1)
        yield Cluster(urls[0], urls[1], db, sandbox)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop_database(db)


def test_sign_in_on_a_use_on_b_revoke_on_b_refused_on_a(cluster: Cluster) -> None:
    browser = Browser(cluster.a)  # cookies are per host, not per port: shared like a proxy
    assert browser.sign_in(SANDBOX_USERS["olena"]).headers["location"] == "/"
    access = browser.client.cookies["access_token"]
    on_b = httpx.get(f"{cluster.b}/api/auth/me", headers=JSON, cookies={"access_token": access})
    assert on_b.status_code == 200 and on_b.json()["name"] == "Олена К."  # noqa: RUF001

    csrf = browser.client.cookies["csrf_token"]
    out = httpx.post(
        f"{cluster.b}/api/auth/logout",
        headers={**JSON, "X-CSRF-Token": csrf},
        cookies={"access_token": access},
    )
    assert out.json() == {"signed_out": True}
    on_a = httpx.get(f"{cluster.a}/api/auth/me", headers=JSON, cookies={"access_token": access})
    assert on_a.status_code == 401
    browser.close()


def test_a_session_cached_on_a_is_refused_on_a_once_revoked_on_b(cluster: Cluster) -> None:
    """A has the session in its cache (auth/session_cache.py): B's sign-out must reach it
    (SQLite: data_version; PostgreSQL: the trigger's NOTIFY) before the next request."""
    browser = Browser(cluster.a)
    browser.sign_in(SANDBOX_USERS["alex"])
    access = browser.client.cookies["access_token"]
    cookies = {"access_token": access}
    for _ in range(3):  # the first reads the database, the next ones A's memory
        r = httpx.get(f"{cluster.a}/api/auth/me", headers=JSON, cookies=cookies)
        assert r.status_code == 200
    csrf = browser.client.cookies["csrf_token"]
    out = httpx.post(
        f"{cluster.b}/api/auth/logout", headers={**JSON, "X-CSRF-Token": csrf}, cookies=cookies
    )
    assert out.json() == {"signed_out": True}
    refused_soon(f"{cluster.a}/api/auth/me", cluster.db, JSON, cookies)
    # Blocked by plain SQL (no instance saw it happen): the same.
    browser.sign_in(SANDBOX_USERS["alex"])
    cookies = {"access_token": browser.client.cookies["access_token"]}
    for _ in range(3):
        assert httpx.get(f"{cluster.a}/api/auth/me", headers=JSON, cookies=cookies).is_success
    cluster.db.execute("UPDATE users SET blocked_at = ?", ("2026-01-01 00:00:00.000000",))
    refused_soon(f"{cluster.a}/api/auth/me", cluster.db, JSON, cookies)
    browser.close()


def test_fifty_syncs_across_two_instances_one_refresh(cluster: Cluster) -> None:
    cluster.sandbox.faults(ip_rate_limit=0)  # about the refresh, not Upwork's per-IP limit
    browser = Browser(cluster.a)
    browser.sign_in(SANDBOX_USERS["alex"])
    me = browser.get("/api/auth/me", headers=JSON).json()
    expire_access(cluster.db, me["id"])
    cookies = {"access_token": browser.client.cookies["access_token"]}
    headers = {**JSON, "X-CSRF-Token": browser.client.cookies["csrf_token"]}

    def call(i: int) -> int:
        base = cluster.a if i % 2 else cluster.b
        return httpx.post(
            f"{base}/api/upwork/profile/sync", headers=headers, cookies=cookies, timeout=60
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(call, range(50)))
    assert statuses == [200] * 50
    assert cluster.sandbox.state.stats["token_refresh"] == 1
    browser.close()
