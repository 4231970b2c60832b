from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from upwork_assistant.app import create_app
from upwork_assistant.config import Settings
from upwork_assistant.db.migrate import upgrade
from upwork_assistant.sandbox import (
    SandboxClient,
    SandboxConfig,
    SandboxUser,
    create_sandbox_app,
    default_users,
)

from .helpers import Browser, TestDb, bound_socket, serve

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


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


#: With these set (`make test` does, for its second run), every test gets a PostgreSQL
#: database of its own and the app shares rate-limit counters through Redis.
POSTGRES = os.environ.get("TEST_POSTGRES_URL")  # e.g. postgresql://postgres@127.0.0.1:5433
REDIS = os.environ.get("TEST_REDIS_URL")


def _pg_admin(sql: str) -> None:
    import psycopg

    assert POSTGRES
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """A migrated database to copy for each test: a SQLite file or a PostgreSQL template."""
    if POSTGRES:
        _pg_admin("DROP DATABASE IF EXISTS ua_template WITH (FORCE)")
        _pg_admin("CREATE DATABASE ua_template")
        upgrade(f"{POSTGRES}/ua_template")
        return "ua_template"
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


_db_counter = itertools.count()


def fresh_database(template: Path | str, data: Path) -> TestDb:
    if POSTGRES:
        name = f"ua_test_{os.getpid()}_{next(_db_counter)}"
        _pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return TestDb(f"{POSTGRES}/{name}")
    path = data / "app.db"
    shutil.copy(template, path)
    return TestDb.sqlite(path)


def drop_database(db: TestDb) -> None:
    if db.is_postgres:
        _pg_admin(f"DROP DATABASE IF EXISTS {db.url.rsplit('/', 1)[1]} WITH (FORCE)")


def flush_redis() -> None:
    if REDIS:
        import redis

        redis.Redis.from_url(REDIS).flushdb()


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


@pytest.fixture
def app_factory(tmp_path: Path, migrated_template: Path | str) -> Iterator[AppFactory]:
    """Start the real app (sandbox mode unless told otherwise) on a loopback port."""
    stack: list[Any] = []

    def start(sock: socket.socket | None = None, **overrides: Any) -> RunningApp:
        sock = sock or bound_socket()
        port = sock.getsockname()[1]
        data = tmp_path / f"data{len(stack)}"
        data.mkdir()
        db = fresh_database(migrated_template, data)
        flush_redis()
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
        settings = Settings(**values)
        app = create_app(settings)
        ctx = serve(app, sock)
        url = ctx.__enter__()
        running = RunningApp(url, db, settings, app)
        stack.append((ctx, running))
        return running

    yield start
    for ctx, running in reversed(stack):
        for b in running.browsers:
            b.close()
        ctx.__exit__(None, None, None)
        drop_database(running.db_path)


@pytest.fixture
def running(app_factory: AppFactory) -> RunningApp:
    return app_factory()


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


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., StandaloneSandbox]]:
    contexts: list[Any] = []

    def start(
        redirect_uris: list[str], users: list[SandboxUser] | None = None
    ) -> StandaloneSandbox:
        config = SandboxConfig(
            clients=[SandboxClient("test-client", "test-secret", tuple(redirect_uris))]
        )
        if users is not None:
            config.users = users
        app = create_sandbox_app(config)
        ctx = serve(app)
        url = ctx.__enter__()
        contexts.append(ctx)
        return StandaloneSandbox(url, app, "test-client", "test-secret")

    yield start
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the SDK test talks plain http


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


@pytest.fixture
def external(
    app_factory: AppFactory, sandbox_factory: Callable[..., StandaloneSandbox]
) -> External:
    """The app in real-Upwork mode, pointed at a standalone sandbox (with 20 extra users),
    and the environment for command-line processes sharing its database."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    sb = sandbox_factory(
        [f"http://127.0.0.1:{port}/api/auth/upwork/callback"],
        users=default_users() + extra_users(20),
    )
    upwork = {
        "upwork_client_id": sb.client_id,
        "upwork_client_secret": sb.client_secret,
        "upwork_authorize_url": f"{sb.url}/ab/account-security/oauth2/authorize",
        "upwork_token_url": f"{sb.url}/api/v3/oauth2/token",
        "upwork_graphql_url": f"{sb.url}/graphql",
    }
    app = app_factory(sock=sock, **upwork)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPWORK_", "APP_", "DATABASE_", "SECRET_", "TOKEN_"))
    }
    env.update({k.upper(): v for k, v in upwork.items()})
    env.update(
        {
            "APP_BASE_URL": app.url,
            "DATA_DIR": str(app.settings.data_dir),  # the same generated secrets
            "DATABASE_URL": app.db_path.url,
            "UPWORK_RATE_LIMIT": "1000/second",
        }
    )
    return External(app, sb, env)
