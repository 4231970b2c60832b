"""The fixtures, and only them: what they build and the names tests share live in
tests/fixtures.py (import from there, never from here)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from upwork_assistant.app import create_app
from upwork_assistant.db.migrate import upgrade
from upwork_assistant.sandbox import (
    SandboxClient,
    SandboxConfig,
    SandboxUser,
    create_sandbox_app,
    default_users,
)

from .fixtures import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ENV_VARS,
    POSTGRES,
    REAL_TIER_FIXTURES,
    AppFactory,
    External,
    InProcessApp,
    InProcessFactory,
    RunningApp,
    StandaloneSandbox,
    app_settings,
    drop_database,
    extra_users,
    flush_redis,
    fresh_database,
    new_data_dir,
    pg_admin,
    route_upwork_calls_in_process,
)
from .helpers import bound_socket, serve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """A migrated database to copy for each test: a SQLite file or a PostgreSQL template."""
    if POSTGRES:
        pg_admin("DROP DATABASE IF EXISTS ua_template WITH (FORCE)")
        pg_admin("CREATE DATABASE ua_template")
        upgrade(f"{POSTGRES}/ua_template")
        return "ua_template"
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


# ----- the real tier: uvicorn on loopback ----------------------------------------------


@pytest.fixture
def app_factory(tmp_path: Path, migrated_template: Path | str) -> Iterator[AppFactory]:
    """Start the real app (sandbox mode unless told otherwise) on a loopback port."""
    stack: list[Any] = []

    def start(
        sock: socket.socket | None = None, host: str | None = None, **overrides: Any
    ) -> RunningApp:
        """``host="localhost"``: the app's address (APP_BASE_URL, and the URL tests open)
        names the loopback by name, as WebAuthn needs (browsers refuse an IP address)."""
        sock = sock or bound_socket()
        port = sock.getsockname()[1]
        data = new_data_dir(tmp_path)
        db = fresh_database(migrated_template, data)
        flush_redis()
        if host is not None:
            overrides.setdefault("app_base_url", f"http://{host}:{port}")
        settings = app_settings(port, data, db, overrides)
        app = create_app(settings)
        db.after_write.append(app.state.services.sessions.cache.clear_all)
        ctx = serve(app, sock)
        url = ctx.__enter__()
        if host is not None:
            url = url.replace("127.0.0.1", host, 1)
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


# ----- the in-process tier: httpx.ASGITransport, no thread, no socket ------------------


@pytest.fixture
async def inprocess_factory(
    tmp_path: Path, migrated_template: Path | str
) -> AsyncIterator[InProcessFactory]:
    """Build the app exactly as ``app_factory`` does (fresh database from the migrated
    template, the same settings and overrides), run its lifespan, and reach it in-process;
    its own calls to its mounted Upwork sandbox go in-process too."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> InProcessApp:
            # A port nobody listens on (bound, then let go at once): if anything ever
            # tried the network instead of the ASGI transport, it would be refused.
            with contextlib.closing(bound_socket()) as sock:
                port = sock.getsockname()[1]
            data = new_data_dir(tmp_path)
            db = fresh_database(migrated_template, data)
            stack.callback(drop_database, db)
            flush_redis()
            settings = app_settings(port, data, db, overrides)
            app = create_app(settings)
            db.after_write.append(app.state.services.sessions.cache.clear_all)
            route_upwork_calls_in_process(app.state.services, app)
            await stack.enter_async_context(app.router.lifespan_context(app))
            handle = InProcessApp(f"http://127.0.0.1:{port}", db, settings, app)
            stack.push_async_callback(handle.aclose)
            return handle

        yield start


@pytest.fixture
async def inprocess(inprocess_factory: InProcessFactory) -> InProcessApp:
    """The app with the default test settings, in-process."""
    return await inprocess_factory()


@pytest.fixture
def asgi_client(inprocess: InProcessApp) -> httpx.AsyncClient:
    """A plain client of the in-process app (closed with it)."""
    return inprocess.client()


# ----- hooks ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the SDK test talks plain http


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast tier stays fast: a test marked ``inprocess`` uses no real-tier fixture."""
    for item in items:
        if item.get_closest_marker("inprocess") is None:
            continue
        used = REAL_TIER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used:
            raise pytest.UsageError(
                f"{item.nodeid} is marked inprocess but uses {', '.join(sorted(used))}"
            )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test module (Debian's, via Playwright)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (scripts/ensure-browser.sh)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
