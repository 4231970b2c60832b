"""The in-process tier itself (tests/fixtures.py): no socket anywhere, the sandbox too."""

from __future__ import annotations

import httpx
import pytest

from .fixtures import SANDBOX_USERS, InProcessApp
from .upwork_helpers import JSON, sign_in_inprocess

pytestmark = pytest.mark.inprocess


async def test_the_app_reaches_its_mounted_sandbox_in_process(inprocess: InProcessApp) -> None:
    services = inprocess.app.state.services
    assert isinstance(services.oauth.transport._inner, httpx.ASGITransport)
    assert services.http._transport is services.oauth.transport  # GraphQL: the same way
    # Nothing listens at the app's address: a sign-in over the network could not work.
    async with httpx.AsyncClient(timeout=2) as network:
        with pytest.raises(httpx.ConnectError):
            await network.get(f"{inprocess.url}/healthz")
    browser, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    profile = (await browser.get("/api/upwork/profile", headers=JSON)).json()
    assert profile["upwork_id"] == SANDBOX_USERS["alex"]
    assert inprocess.sandbox_state.refresh_tokens  # the mounted sandbox issued the tokens
