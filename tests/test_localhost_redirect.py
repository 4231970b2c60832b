"""Development at http://localhost (as `make run` serves): a browser that opens
http://127.0.0.1 is moved to localhost first, so cookies, the Upwork callback and passkeys
share one origin; API clients, probes and other hosts are never moved."""

from __future__ import annotations

import pytest

from .fixtures import InProcessFactory

pytestmark = pytest.mark.inprocess
HTML = {"accept": "text/html,application/xhtml+xml"}


async def test_a_page_at_127_0_0_1_moves_to_localhost(inprocess_factory: InProcessFactory) -> None:
    app = await inprocess_factory(app_base_url="http://localhost:8765")
    async with app.client(base_url="http://127.0.0.1:8765") as ip:
        page = await ip.get("/security?tab=passkeys", headers=HTML)
        assert page.status_code == 307
        assert page.headers["location"] == "http://localhost:8765/security?tab=passkeys"
        start = await ip.get("/api/auth/upwork/authorize", headers=HTML)
        assert start.headers["location"] == "http://localhost:8765/api/auth/upwork/authorize"
        # Not moved: probes, API clients, another port, a form post.
        assert (await ip.get("/healthz")).status_code == 200
        assert (
            await ip.get("/api/auth/me", headers={"accept": "application/json"})
        ).status_code == 401
        assert (await ip.post("/api/auth/logout", headers=HTML)).status_code != 307
    async with app.client(base_url="http://127.0.0.1:9999") as other_port:
        assert (await other_port.get("/", headers=HTML)).status_code == 200
    async with app.client(base_url="http://localhost:8765") as canonical:
        assert (await canonical.get("/", headers=HTML)).status_code == 200


async def test_nothing_moves_when_the_app_lives_at_an_ip(
    inprocess_factory: InProcessFactory,
) -> None:
    app = await inprocess_factory(app_base_url="http://127.0.0.1:8765")
    async with app.client(base_url="http://127.0.0.1:8765") as ip:
        assert (await ip.get("/", headers=HTML)).status_code == 200
