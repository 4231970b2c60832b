"""A small client for Upwork's GraphQL API over a shared httpx connection pool."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import UpworkError, UpworkUnauthorized, UpworkUnavailable


class UpworkGraphQLClient:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self._url = url
        self._http = http

    async def query(
        self,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> dict[str, Any]:
        """Run ``query``; return its ``data``. Raises UpworkError on any failure."""
        headers = {"Authorization": f"Bearer {access_token}"}
        if tenant_id:
            headers["X-Upwork-API-TenantId"] = tenant_id
        try:
            resp = await self._http.post(
                self._url, json={"query": query, "variables": variables or {}}, headers=headers
            )
        except httpx.TimeoutException:
            raise UpworkUnavailable() from None
        except httpx.TransportError:
            raise UpworkUnavailable("Upwork could not be reached. Please try again.") from None
        if resp.status_code == 401:
            raise UpworkUnauthorized()
        if resp.status_code == 429:
            raise UpworkError(
                "upwork_rate_limited",
                "Upwork is limiting requests right now. Please try again in a minute.",
                503,
            )
        if resp.status_code >= 400:
            raise UpworkError(
                "profile_fetch_failed",
                f"Upwork's API answered with an error (HTTP {resp.status_code}).",
            )
        try:
            body = resp.json()
        except ValueError:
            raise UpworkError("profile_fetch_failed", "Upwork's API answer was not JSON.") from None
        if not isinstance(body, dict):
            raise UpworkError("profile_fetch_failed", "Upwork's API answer was not understood.")
        if body.get("errors"):
            raise UpworkError("profile_fetch_failed", "Upwork's API could not return the profile.")
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpworkError("profile_fetch_failed", "Upwork's API returned no data.")
        return data
