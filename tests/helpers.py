"""Shared test machinery: real uvicorn servers on loopback, a browser-like client."""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
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
        consent = parse_consent(consent_page.text)
        action = httpx.URL(str(consent_page.url)).join(consent.action)
        r = self.post(
            str(action),
            data={
                "consent_id": consent.consent_id,
                "user_id": user_id or consent.users[0],
                "decision": decision,
            },
        )
        assert r.status_code == 302, r.text
        return str(r.headers["location"])

    def sign_in(self, user_id: str | None = None) -> httpx.Response:
        """The whole flow; returns the callback's response (a redirect)."""
        callback = self.decide(self.start_sign_in(), user_id)
        return self.get(callback)


def rows(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, args).fetchall()


def count(db_path: Path, table: str) -> int:
    return int(rows(db_path, f"SELECT count(*) FROM {table}")[0][0])  # noqa: S608
