"""Shared test machinery: real uvicorn servers on loopback, browser-like clients (over real
HTTP, or in-process through an ASGI transport)."""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server in a thread; yield its base URL."""
    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    # As `upwork-assistant serve` does: uvicorn itself never believes X-Forwarded-*.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=True,
        lifespan="on",
        timeout_graceful_shutdown=2,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Consent:
    action: str
    consent_id: str
    users: list[str]


def parse_consent(html: str) -> Consent:
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', html)
    assert action and consent_id, "not a consent page"
    users = re.findall(r'name="user_id" value="([^"]+)"', html)
    return Consent(action.group(1), consent_id.group(1), users)


class Browser:
    """An httpx client that behaves like a browser: keeps cookies, sends Accept: text/html,
    and lets the test follow each redirect itself."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(
            base_url=base_url, headers={"Accept": BROWSER_ACCEPT}, timeout=30
        )

    def close(self) -> None:
        self.client.close()

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.post(url, **kw)

    def start_sign_in(self) -> httpx.Response:
        """Click "Sign in with Upwork"; return the consent page."""
        r = self.get("/api/auth/upwork/authorize", params={"redirect": "true"})
        assert r.status_code == 302, r.text
        page = self.get(r.headers["location"])
        assert page.status_code == 200, page.text
        return page

    def decide(
        self, consent_page: httpx.Response, user_id: str | None = None, decision: str = "allow"
    ) -> str:
        """Pick a user and Allow/Deny on the consent page; return the callback URL."""
        action, form = consent_form(consent_page, user_id, decision)
        r = self.post(action, data=form)
        assert r.status_code == 302, r.text
        return str(r.headers["location"])

    def sign_in(self, user_id: str | None = None) -> httpx.Response:
        """The whole flow; returns the callback's response (a redirect)."""
        callback = self.decide(self.start_sign_in(), user_id)
        return self.get(callback)


def consent_form(
    consent_page: httpx.Response, user_id: str | None, decision: str
) -> tuple[str, dict[str, str]]:
    """Where the consent page's form posts, and what it posts for ``user_id`` (the first
    user when None) and ``decision`` ("allow" or "deny")."""
    consent = parse_consent(consent_page.text)
    action = httpx.URL(str(consent_page.url)).join(consent.action)
    return str(action), {
        "consent_id": consent.consent_id,
        "user_id": user_id or consent.users[0],
        "decision": decision,
    }


class AsyncBrowser:
    """:class:`Browser` for the in-process tier: the same behaviour over an async client
    (``transport``: an ``httpx.ASGITransport`` of the app)."""

    def __init__(self, base_url: str, transport: httpx.AsyncBaseTransport) -> None:
        self.base_url = base_url
        self.client = httpx.AsyncClient(
            base_url=base_url, transport=transport, headers={"Accept": BROWSER_ACCEPT}, timeout=30
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.post(url, **kw)

    async def start_sign_in(self) -> httpx.Response:
        """Click "Sign in with Upwork"; return the consent page."""
        r = await self.get("/api/auth/upwork/authorize", params={"redirect": "true"})
        assert r.status_code == 302, r.text
        page = await self.get(r.headers["location"])
        assert page.status_code == 200, page.text
        return page

    async def decide(
        self, consent_page: httpx.Response, user_id: str | None = None, decision: str = "allow"
    ) -> str:
        """Pick a user and Allow/Deny on the consent page; return the callback URL."""
        action, form = consent_form(consent_page, user_id, decision)
        r = await self.post(action, data=form)
        assert r.status_code == 302, r.text
        return str(r.headers["location"])

    async def sign_in(self, user_id: str | None = None) -> httpx.Response:
        """The whole flow; returns the callback's response (a redirect)."""
        callback = await self.decide(await self.start_sign_in(), user_id)
        return await self.get(callback)


class TestDb:
    """A test's own database: a SQLite file, or a PostgreSQL database (when the suite runs
    with TEST_POSTGRES_URL). Tests read and change it with plain SQL through :func:`rows`,
    written for SQLite (``?`` placeholders, timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff');
    results come back in SQLite's shapes whichever database it is."""

    __test__ = False  # not a test class

    def __init__(self, url: str, path: Path | None = None) -> None:
        self.url = url  # the plain form, as DATABASE_URL takes it
        self.path = path
        #: Called after a test's own write on PostgreSQL: the session cache of an app in
        #: this process forgets at once. In the app that takes a trigger's notice, which
        #: could lose a race with the test's very next request (the window measured in
        #: docs/security.md); tests/test_session_cache.py tests the notices themselves.
        self.after_write: list[Callable[[], None]] = []

    @classmethod
    def sqlite(cls, path: Path) -> TestDb:
        return cls(f"sqlite:///{path}", path)

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    def execute(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.path is not None:
            with sqlite3.connect(self.path) as conn:
                return conn.execute(sql, args).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            cur = conn.execute(sql.replace("?", "%s"), args)  # type: ignore[arg-type]
            fetched = cur.fetchall() if cur.description else []
        if sql.lstrip()[:6].upper() in {"UPDATE", "DELETE", "INSERT"}:
            for hook in self.after_write:
                hook()
        return [tuple(_sqlite_shape(v) for v in row) for row in fetched]

    def read_bytes(self) -> bytes:
        """Everything stored, as bytes: to check that no secret is in there in clear.

        SQLite: every file the database writes (main file, ``-wal``, ``-shm``), after a
        passive checkpoint, free pages and stale WAL frames included: "gone" must mean gone
        from the disk, not only from query results."""
        if self.path is not None:
            with sqlite3.connect(self.path) as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return b"".join(
                f.read_bytes()
                for f in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
                if f.exists()
            )
        tables = [
            r[0]
            for r in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", ())
        ]
        dump = []
        for table in tables:
            dump += [str(r[0]) for r in self.execute(f"SELECT t::text FROM {table} t", ())]  # noqa: S608
        return "\n".join(dump).encode()


def _sqlite_shape(value: Any) -> Any:
    import json
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def refused_soon(
    url: str, db: TestDb, headers: dict[str, str], cookies: dict[str, str] | None = None
) -> None:
    """A revoked session is refused by another process at its next request. On SQLite,
    strictly: every lookup reads data_version first. On PostgreSQL the notice travels
    between processes, so a request racing it could still be answered (docs/security.md
    has the measured window): allow it a second rather than a flaky test, and never more."""
    deadline = time.monotonic() + (1.0 if db.is_postgres else 0.0)
    while True:
        status = httpx.get(url, headers=headers, cookies=cookies).status_code
        if status == 401:
            return
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.005)


def rows(db: TestDb, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return db.execute(sql, args)


def count(db: TestDb, table: str) -> int:
    return int(rows(db, f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608
