"""Upwork's GraphQL API over a shared httpx connection pool.

Idempotent requests (GraphQL queries, not mutations) are retried on 5xx and network errors
with exponential backoff and full jitter, and on 429 after the ``Retry-After`` Upwork asks
for (when that is short). Every attempt first spends from our own budget for calls to
Upwork, so the app stays under Upwork's published limits.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

from ..security.ratelimit import Budget
from .errors import (
    UpworkAPIError,
    UpworkRateLimited,
    UpworkUnauthorized,
    UpworkUnavailable,
)

MAX_BACKOFF = 8.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.25  # base delay; attempt n waits uniform(0, backoff * 2**(n-1))
    retry_after_max_wait: float = 5.0  # honour a 429's Retry-After up to this long
    budget_max_wait: float = 2.0  # wait this long for room in our own budget

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)))  # noqa: S311


@lru_cache(maxsize=256)
def is_idempotent(query: str) -> bool:
    """True when every operation in the document is a query (safe to send twice)."""
    try:
        document = parse(query)
    except GraphQLError:
        return False
    return all(
        d.operation is OperationType.QUERY
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    )


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


class UpworkGraphQLClient:
    def __init__(
        self, url: str, http: httpx.AsyncClient, budget: Budget, policy: RetryPolicy
    ) -> None:
        self._url = url
        self._http = http
        self._budget = budget
        self.policy = policy

    async def execute(
        self,
        access_token: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        tenant_id: str | None = None,
        allow_partial: bool = False,
    ) -> dict[str, Any]:
        """Run ``query``; return its ``data``. With ``allow_partial``, data that came with
        GraphQL errors is returned too. Raises a typed UpworkError otherwise."""
        headers = {"Authorization": f"Bearer {access_token}"}
        if tenant_id:
            headers["X-Upwork-API-TenantId"] = tenant_id
        body = {"query": query, "variables": variables or {}}
        attempts = self.policy.attempts if is_idempotent(query) else 1
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= attempts
            wait = await self._budget.wait(max_wait=self.policy.budget_max_wait)
            if wait:
                raise UpworkRateLimited(wait)
            try:
                resp = await self._http.post(self._url, json=body, headers=headers)
            except httpx.TransportError as exc:
                if last:
                    if isinstance(exc, httpx.TimeoutException):
                        raise UpworkUnavailable() from None
                    raise UpworkUnavailable("Upwork could not be reached.") from None
                await asyncio.sleep(self.policy.delay(attempt))
                continue
            if resp.status_code == 401:
                raise UpworkUnauthorized()
            if resp.status_code == 429:
                retry_after = _retry_after(resp)
                if last or retry_after > self.policy.retry_after_max_wait:
                    raise UpworkRateLimited(retry_after)
                await asyncio.sleep(retry_after)
                continue
            if resp.status_code >= 500:
                if last:
                    raise UpworkAPIError(
                        f"Upwork's API answered with an error (HTTP {resp.status_code})."
                    )
                await asyncio.sleep(self.policy.delay(attempt))
                continue
            return _data(resp, allow_partial)


def _data(resp: httpx.Response, allow_partial: bool) -> dict[str, Any]:
    if resp.status_code >= 400:
        raise UpworkAPIError(f"Upwork's API refused the request (HTTP {resp.status_code}).")
    try:
        body = resp.json()
    except ValueError:
        raise UpworkAPIError("Upwork's API answer was not JSON.") from None
    if not isinstance(body, dict):
        raise UpworkAPIError("Upwork's API answer was not understood.")
    data = body.get("data")
    if body.get("errors") and not (allow_partial and isinstance(data, dict)):
        raise UpworkAPIError("Upwork's API could not answer the query.")
    if not isinstance(data, dict):
        raise UpworkAPIError("Upwork's API returned no data.")
    return data
