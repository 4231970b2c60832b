"""Rate limits with the `limits` library (in memory; shared storage comes with REDIS_URL).

A budget is one or more limits in `limits` syntax, e.g. ``"8/second;35000/day"``; a hit
counts against every limit of the budget and is allowed only when all have room.
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter as SyncMovingWindowRateLimiter

from ..errors import AppError


class RateLimitExceeded(AppError):
    """A client went over one of our limits: 429 with Retry-After."""

    def __init__(self, retry_after: float, message: str = "Too many requests.") -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(
            "rate_limited", message, 429, headers={"Retry-After": str(self.retry_after)}
        )


class Budget:
    def __init__(self, name: str, spec: str, limiter: RateLimiter) -> None:
        self.name = name
        self.items: list[RateLimitItem] = parse_many(spec)
        self._limiter = limiter

    async def hit(self, key: str = "") -> float:
        """Spend one unit. Returns 0 when allowed, else the seconds until there is room."""
        return await self._limiter.hit(self, key)


class RateLimiter:
    """``storage_uri``: ``async+memory://`` for one process, ``async+redis://...`` shared."""

    def __init__(self, storage_uri: str = "async+memory://") -> None:
        self._memory: SyncMovingWindowRateLimiter | None = None
        if storage_uri.removeprefix("async+").startswith("memory://"):
            # In one process: the library's synchronous memory storage, whose hits need no
            # await. Its asyncio twin starts a task after every hit that hands each key to a
            # thread to trim: under load, a thread hop every few requests on the server's
            # core (docs/benchmarks.md). Same strategy, same library.
            self._memory = SyncMovingWindowRateLimiter(storage_from_string("memory://"))
            return
        # Redis through redis-py (with its hiredis parser) rather than the library's default
        # client, coredis: a third less CPU per hit (docs/benchmarks.md).
        self._storage = storage_from_string(storage_uri, implementation="redispy")
        self._strategy = MovingWindowRateLimiter(self._storage)

    async def ping(self) -> bool:
        if self._memory is not None:
            return True
        try:
            return bool(await self._storage.check())  # type: ignore[misc]
        except Exception:  # unreachable storage: not ready
            return False

    def budget(self, name: str, spec: str) -> Budget:
        return Budget(name, spec, self)

    async def hit(self, budget: Budget, key: str) -> float:
        """Count one unit against every limit of the budget with the strategy's atomic hit
        (a Lua script on Redis; under a lock in memory), so a concurrent burst can never
        pass a limit between a test and a count. A refused hit leaves the limits already
        counted counted: under pressure that errs on the side of refusing."""
        ids = (budget.name, key)
        for item in budget.items:
            if self._memory is not None:
                if self._memory.hit(item, *ids):
                    continue
                stats = self._memory.get_window_stats(item, *ids)
            elif await self._strategy.hit(item, *ids):
                continue
            else:
                stats = await self._strategy.get_window_stats(item, *ids)
            return max(0.05, stats.reset_time - time.time())
        return 0.0
