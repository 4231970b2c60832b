"""PostgreSQL or Redis briefly gone: clear 503s (never 500), nothing half-written, and the
service recovers by itself when they are back. Real servers, stopped and started again.

These run in the PostgreSQL + Redis pass of `make test` (scripts/with-services.sh installs
the servers); the SQLite pass skips them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from upwork_assistant.db.migrate import upgrade

from .fixtures import POSTGRES, REDIS, SANDBOX_USERS, AppFactory
from .helpers import bound_socket
from .upwork_helpers import JSON, sign_in

pytestmark = pytest.mark.skipif(
    not (POSTGRES and REDIS), reason="runs in the PostgreSQL + Redis pass of make test"
)


def free_port() -> int:
    sock = bound_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class PostgresServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if os.getuid() == 0:
            shutil.chown(workdir, "postgres")
        self._run("initdb", "-D", str(workdir / "pg"), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_pg, str(self.bin / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.workdir / "pg"),
            "-w",
            "-l",
            str(self.workdir / "pg.log"),
            "start",
            "-o",
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.workdir / "pg"), "-m", "immediate", "stop")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    # Outside pytest's root-only temp tree: PostgreSQL runs as its own user.
    workdir = Path(tempfile.mkdtemp(prefix="ua-pg-"))
    workdir.chmod(0o755)  # the postgres user must reach it
    server = PostgresServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_redis_outage_gives_503_and_recovers(
    app_factory: AppFactory, own_redis: RedisServer
) -> None:
    app = app_factory(redis_url=own_redis.url)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    assert browser.get("/api/auth/me", headers=JSON).status_code == 200
    assert httpx.get(f"{app.url}/readyz").json()["redis"] == "ok"

    own_redis.stop()
    r = browser.get("/api/auth/me", headers=JSON)
    assert r.status_code == 503 and r.json()["error"] == "service_unavailable"
    ready = httpx.get(f"{app.url}/readyz")
    assert ready.status_code == 503 and ready.json()["redis"] == "unreachable"
    start = httpx.get(f"{app.url}/api/auth/upwork/authorize", headers=JSON)
    assert start.status_code == 503  # sign-in is rate limited through Redis too

    own_redis.start()
    deadline = time.monotonic() + 15
    while browser.get("/api/auth/me", headers=JSON).status_code != 200:
        assert time.monotonic() < deadline, "did not recover"
        time.sleep(0.2)
    assert httpx.get(f"{app.url}/readyz").status_code == 200


def test_postgres_outage_gives_503_and_recovers(
    app_factory: AppFactory, own_postgres: PostgresServer
) -> None:
    upgrade(own_postgres.url)
    app = app_factory(database_url=own_postgres.url)
    browser, _ = sign_in(app, SANDBOX_USERS["alex"])
    assert browser.get("/api/auth/me", headers=JSON).status_code == 200

    own_postgres.stop()
    for path in ("/api/auth/me", "/api/upwork/profile", "/api/security/sessions"):
        r = browser.get(path, headers=JSON)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.json()["error"] == "service_unavailable"
    assert httpx.get(f"{app.url}/readyz").status_code == 503
    # A sign-in while the database is away fails clearly and leaves nothing behind.
    other = app.browser()
    r = other.get("/api/auth/upwork/authorize", params={"redirect": "true"}, headers=JSON)
    assert r.status_code == 503

    own_postgres.start()
    deadline = time.monotonic() + 20
    while browser.get("/api/auth/me", headers=JSON).status_code != 200:
        assert time.monotonic() < deadline, "did not recover"
        time.sleep(0.3)
    assert httpx.get(f"{app.url}/readyz").status_code == 200
    assert app.browser().sign_in(SANDBOX_USERS["olena"]).headers["location"] == "/"
