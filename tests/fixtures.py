"""What the fixtures in conftest.py build, and the names tests share with them.

pytest advises against importing from conftest.py, so the constants, the databases' set-up
and the handles the fixtures return live here; conftest.py only defines the fixtures.

Two tiers:

- **Real** (:class:`RunningApp`, fixtures ``app_factory``, ``running``, ``external``,
  ``sandbox_factory``): uvicorn in a thread on a loopback port, real HTTP. For what only
  end-to-end shows (sockets, processes sharing the app, the browser).
- **In-process** (:class:`InProcessApp`, fixtures ``inprocess_factory``, ``inprocess``,
  ``asgi_client``; tests marked ``@pytest.mark.inprocess``, ``make test-fast``): the same
  app, built the same way (same fresh database, same settings), its lifespan run, spoken
  to through ``httpx.ASGITransport``: no thread, no socket. The app's own calls to Upwork
  (its mounted sandbox) go in-process too: see :func:`route_upwork_calls_in_process`.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from upwork_assistant.config import Settings, new_encryption_key_spec
from upwork_assistant.sandbox import SandboxUser, default_users
from upwork_assistant.services import Services
from upwork_assistant.upwork.gate import GatedTransport

from .helpers import AsyncBrowser, Browser, TestDb

ENV_VARS = [
    "APP_ENV",
    "APP_BASE_URL",
    "DATA_DIR",
    "DATABASE_URL",
    "SECRET_KEY",
    "TOKEN_ENCRYPTION_KEYS",
    "UPWORK_CLIENT_ID",
    "UPWORK_CLIENT_SECRET",
    "UPWORK_REDIRECT_URI",
    "UPWORK_AUTHORIZE_URL",
    "UPWORK_TOKEN_URL",
    "UPWORK_GRAPHQL_URL",
    "UPWORK_HTTP_TIMEOUT",
]

SANDBOX_USERS = {
    "alex": "1717171717171717001",
    "olena": "1717171717171717002",
    "noemail": "1717171717171717003",
    "html": "1717171717171717004",
    "client": "1717171717171717005",  # a client's account: no freelancer profile
}

#: With these set (`make test` does, for its second run), every test gets a PostgreSQL
#: database of its own and the app shares rate-limit counters through Redis.
POSTGRES = os.environ.get("TEST_POSTGRES_URL")  # e.g. postgresql://postgres@127.0.0.1:5433
REDIS = os.environ.get("TEST_REDIS_URL")

#: The fixtures of the real tier: a test marked ``inprocess`` may use none of them.
REAL_TIER_FIXTURES = frozenset({"app_factory", "running", "external", "sandbox_factory"})


def pg_admin(sql: str) -> None:
    import psycopg

    assert POSTGRES
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


_db_counter = itertools.count()


def fresh_database(template: Path | str, data: Path) -> TestDb:
    if POSTGRES:
        name = f"ua_test_{os.getpid()}_{next(_db_counter)}"
        pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return TestDb(f"{POSTGRES}/{name}")
    path = data / "app.db"
    shutil.copy(template, path)
    return TestDb.sqlite(path)


def drop_database(db: TestDb) -> None:
    if db.is_postgres:
        pg_admin(f"DROP DATABASE IF EXISTS {db.url.rsplit('/', 1)[1]} WITH (FORCE)")


def flush_redis() -> None:
    if REDIS:
        import redis

        redis.Redis.from_url(REDIS).flushdb()


def new_data_dir(tmp_path: Path) -> Path:
    """``data0``, ``data1``, ...: the next unused data directory of this test."""
    for n in itertools.count():
        data = tmp_path / f"data{n}"
        if not data.exists():
            data.mkdir()
            return data
    raise AssertionError("unreachable")


def app_settings(port: int, data: Path, db: TestDb, overrides: dict[str, Any]) -> Settings:
    """The settings every test app gets (both tiers), then the test's own overrides."""
    values: dict[str, Any] = {
        "app_base_url": f"http://127.0.0.1:{port}",
        "data_dir": data,
        "database_url": db.url,
        "redis_url": REDIS,
        "upwork_http_timeout": 5.0,
        # Generous limits: many tests sign in often from 127.0.0.1; the limits
        # themselves are tested with small values in test_hardening.py.
        "signin_rate_limit": "10000/minute",
        "api_rate_limit": "10000/minute",
        # The upkeep loop runs inside `serve` by default; tests run it when they mean to.
        "worker_in_serve": False,
    }
    values.update(overrides)
    return Settings(**values)


# ----- the real tier -------------------------------------------------------------------


@dataclass
class RunningApp:
    url: str
    db_path: TestDb
    settings: Settings
    app: Any
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        b = Browser(self.url)
        self.browsers.append(b)
        return b

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Accept": "application/json"}, timeout=30)

    @property
    def sandbox_state(self) -> Any:
        return self.app.state.sandbox.state.sandbox

    def faults(self, **values: Any) -> None:
        """Set faults on the mounted sandbox, over HTTP like any client."""
        r = httpx.patch(f"{self.url}/sandbox/upwork/_sandbox/faults", json=values)
        assert r.status_code == 200, r.text


AppFactory = Callable[..., RunningApp]


@dataclass
class StandaloneSandbox:
    url: str
    app: Any
    client_id: str
    client_secret: str

    @property
    def state(self) -> Any:
        return self.app.state.sandbox

    def faults(self, **values: Any) -> None:
        r = httpx.patch(f"{self.url}/_sandbox/faults", json=values)
        assert r.status_code == 200, r.text


@dataclass
class External:
    app: RunningApp
    sandbox: StandaloneSandbox
    env: dict[str, str]


def extra_users(n: int) -> list[SandboxUser]:
    base = default_users()[0]
    return [
        replace(
            base,
            id=f"18000000000000{i:05d}",
            nid=f"user{i}",
            rid=f"80{i:05d}",
            name=f"Sandbox User {i}",
            email=f"user{i}@example.com",
            organization_id=f"19000000000000{i:05d}",
        )
        for i in range(n)
    ]


# ----- the in-process tier -------------------------------------------------------------


def asgi_transport(app: Any) -> httpx.ASGITransport:
    """In-process HTTP to ``app``, answering as a server would: an exception in the app is
    its 500 answer (uvicorn's behaviour), not an exception in the caller."""
    return httpx.ASGITransport(app=app, raise_app_exceptions=False)


def route_upwork_calls_in_process(services: Services, app: Any) -> None:
    """Send the app's own calls to Upwork (token endpoint and GraphQL: in sandbox mode its
    mounted sandbox at APP_BASE_URL/sandbox/upwork) through ``app`` in-process.

    Every such call goes through one :class:`GatedTransport` (shared by ``services.http``
    and ``services.oauth``); its inner transport is swapped, so the gate still applies."""
    gated = services.oauth.transport
    assert isinstance(gated, GatedTransport), type(gated)
    assert services.http._transport is gated  # the GraphQL client's too
    gated._inner = asgi_transport(app)


@dataclass
class InProcessApp:
    """The app built as :class:`RunningApp`'s is, reached in-process. ``url`` is
    ``http://127.0.0.1:<port>`` (APP_BASE_URL unless overridden) where nothing listens:
    talk to it with :meth:`client`, :meth:`api`, :meth:`browser`."""

    url: str
    db_path: TestDb
    settings: Settings
    app: Any
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, **kw: Any) -> httpx.AsyncClient:
        kw.setdefault("base_url", self.url)
        c = httpx.AsyncClient(transport=asgi_transport(self.app), timeout=30, **kw)
        self.clients.append(c)
        return c

    def api(self) -> httpx.AsyncClient:
        return self.client(headers={"Accept": "application/json"})

    def browser(self) -> AsyncBrowser:
        b = AsyncBrowser(self.url, asgi_transport(self.app))
        self.clients.append(b.client)
        return b

    @property
    def sandbox_state(self) -> Any:
        return self.app.state.sandbox.state.sandbox

    async def faults(self, **values: Any) -> None:
        """Set faults on the mounted sandbox, over (in-process) HTTP like any client."""
        r = await self.client().patch("/sandbox/upwork/_sandbox/faults", json=values)
        assert r.status_code == 200, r.text

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()


InProcessFactory = Callable[..., Awaitable[InProcessApp]]


#: Debian's Chromium, driven by Playwright in the browser tests.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def production_settings(tmp_path: Path, **extra: Any) -> Settings:
    """Settings of a production install on the built-in sandbox (for demos), with its
    database in ``tmp_path``."""
    return Settings(
        app_env="production",
        app_base_url="https://demo.example",
        allow_sandbox_in_production=True,
        secret_key="s" * 48,
        token_encryption_keys=new_encryption_key_spec(),
        database_url=f"sqlite:///{tmp_path / 'prod.db'}",
        data_dir=tmp_path,
        **extra,
    )
