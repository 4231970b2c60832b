"""The gate every request to Upwork passes: one pace and one block for the whole host.

Upwork limits requests per IP address, not per user or application: 10 a second (Upwork
support, "What are the API requests limits"; older versions of that article: 40 a minute
and 40,000 a day, above which "your API key may be disabled"). Over it Upwork answers 429,
documents no ``Retry-After``, and lifts the block "within a minute from the last
rate-limited request", so a client that retries after a second keeps itself blocked.

So every process of a host (``serve`` and its workers, ``worker``, the CLI) shares one row
in the database (``upwork_gate``, :class:`~..db.models.UpworkGate`):

- **Pace**: a call reserves the next free slot, one interval after the previous one
  (``8/second`` gives a slot every 125 ms: never more than 9 in any second), and waits for
  it. The daily figure is counted in the same statement.
- **Sign-ins first**: nobody can spend everybody's budget. Each call has a priority:
  ``signin`` (the code exchange and profile query of a sign-in) may queue up to
  ``max_wait`` and use the whole day; ``user`` (what a signed-in user's use of the product
  asks: syncs, fetches on use) may queue half as long and use 90% of the day;
  ``background`` (the worker's keep-alive) only takes a slot that is free now, within 80%
  of the day. So however many syncs are asked for, the rest is there for sign-ins. Each
  user's own share is capped before that by the per-user sync limits
  (``PROFILE_SYNC_RATE_LIMIT``, counted in Redis when configured).
- **Block**: after a 429, nothing goes to Upwork until the block ends (``Retry-After`` when
  Upwork sends one, else ``backoff`` seconds, a minute by default); meanwhile calls fail at
  once with :class:`UpworkRateLimited` (503 and ``Retry-After`` to our clients).

The gate is an httpx transport, so the OAuth client (Authlib) and the GraphQL client go
through it without knowing it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import structlog
from limits import parse_many
from sqlalchemy import case, select, update

from ..db.engine import Database
from ..db.models import UpworkGate as GateRow
from . import metrics
from .errors import UpworkRateLimited

log = structlog.get_logger("upwork_assistant.upwork")

Priority = Literal["signin", "user", "background"]
PRIORITY: ContextVar[Priority] = ContextVar("upwork_priority", default="user")
#: The share of the queue (of ``max_wait``) and of the day each priority may use.
QUEUE_SHARE: dict[Priority, float] = {"signin": 1.0, "user": 0.5, "background": 0.0}
DAY_SHARE: dict[Priority, float] = {"signin": 1.0, "user": 0.9, "background": 0.8}


@contextmanager
def priority(level: Priority) -> Iterator[None]:
    """Calls to Upwork made inside run at ``level`` (see the module's docstring)."""
    token = PRIORITY.set(level)
    try:
        yield
    finally:
        PRIORITY.reset(token)


def background() -> AbstractContextManager[None]:
    """Calls to Upwork made inside are background work: they never queue for the budget."""
    return priority("background")


@dataclass(frozen=True)
class GatePolicy:
    interval: float = 0.125  # seconds between two calls to Upwork, host-wide
    per_day: int | None = 35_000
    max_wait: float = 2.0  # how long an interactive call may queue for its slot
    backoff: float = 60.0  # block after a 429 without Retry-After

    @classmethod
    def from_spec(cls, spec: str, max_wait: float, backoff: float) -> GatePolicy:
        """``8/second;35000/day`` (the `limits` syntax): the pace is the tightest of the
        sub-day limits, the day limit is counted on its own."""
        interval = 0.0
        per_day: int | None = None
        for item in parse_many(spec):
            seconds = item.get_expiry()
            if seconds >= 86_400:
                per_day = min(per_day or item.amount, item.amount)
            else:
                interval = max(interval, seconds / item.amount)
        return cls(interval=interval, per_day=per_day, max_wait=max_wait, backoff=backoff)


def _today(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _until_tomorrow(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today + timedelta(days=1)).timestamp() - now


class UpworkGate:
    def __init__(
        self, db: Database, policy: GatePolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self.policy = policy
        #: Wall-clock seconds (every process of the host shares the slots it stores).
        self._clock = clock

    async def acquire(self, level: Priority | None = None) -> None:
        """Wait for this call's slot, or raise UpworkRateLimited when Upwork has blocked us,
        the day's budget is spent, or the queue is longer than this call may wait."""
        level = level or PRIORITY.get()
        max_wait = self.policy.max_wait * QUEUE_SHARE[level]
        per_day = self.policy.per_day
        day_limit = None if per_day is None else int(per_day * DAY_SHARE[level])
        slot, now = await self._reserve(max_wait, day_limit)
        if slot is None:
            retry_after, reason = await self._why_not(now, max_wait, day_limit)
            metrics.BUDGET_REFUSED.labels(level, reason).inc()
            raise UpworkRateLimited(retry_after)
        wait = max(0.0, slot - self._clock())
        metrics.BUDGET_WAIT.labels(level).observe(wait)
        if wait:
            await asyncio.sleep(wait)

    async def _reserve(self, max_wait: float, day_limit: int | None) -> tuple[float | None, float]:
        """Atomically take the next slot (at most ``max_wait`` from now, while the day's
        count is under ``day_limit``): its start time (None if refused), and the ``now``
        the queue was measured from.

        "Now" is read once the gate row is ours, not before: under contention a call can
        wait seconds for the row while the calls ahead of it move the next slot on from
        their own, later "now"s; measured from a stale one, an empty queue looked longer
        than ``max_wait`` and the call was refused (503) for waiting on the database."""
        p = self.policy
        async with self._db.write() as db:
            # SQLite: write() has already taken the write lock. PostgreSQL: lock the row.
            await db.execute(select(GateRow.id).where(GateRow.id == 1).with_for_update())
            now = self._clock()
            start = case((GateRow.next_slot > now, GateRow.next_slot), else_=now)
            today = _today(now)
            conditions = [GateRow.id == 1, GateRow.blocked_until <= now, start - now <= max_wait]
            values: dict[str, object] = {"next_slot": start + p.interval}
            if day_limit is not None:
                conditions.append((GateRow.day != today) | (GateRow.day_count < day_limit))
                values["day_count"] = case((GateRow.day == today, GateRow.day_count + 1), else_=1)
                values["day"] = today
            row = (
                await db.execute(
                    update(GateRow)
                    .where(*conditions)
                    .values(values)
                    .returning(GateRow.next_slot)
                    .execution_options(synchronize_session=False)
                )
            ).first()
        return (None if row is None else float(row[0]) - p.interval), now

    async def _why_not(
        self, now: float, max_wait: float, day_limit: int | None
    ) -> tuple[float, str]:
        state = await self.state()
        if state.blocked_until > now:
            return state.blocked_until - now, "blocked"
        if day_limit is not None and state.day == _today(now) and state.day_count >= day_limit:
            return _until_tomorrow(now), "daily_budget"
        return max(self.policy.interval, state.next_slot - now - max_wait), "busy"

    async def state(self) -> GateState:
        async with self._db.session() as db:
            gate = await db.get(GateRow, 1)
        if gate is None:
            return GateState(0.0, 0.0, None, "", 0)
        return GateState(
            gate.next_slot, gate.blocked_until, gate.blocked_reason, gate.day, gate.day_count
        )

    async def block(self, seconds: float, reason: str) -> float:
        """Hold every call back for ``seconds`` (extending a block already in place)."""
        until = self._clock() + seconds
        async with self._db.write() as db:
            await db.execute(
                update(GateRow)
                .where(GateRow.id == 1)
                .values(
                    blocked_until=case(
                        (GateRow.blocked_until > until, GateRow.blocked_until),
                        else_=until,
                    ),
                    blocked_reason=reason,
                )
                .execution_options(synchronize_session=False)
            )
        metrics.BACKOFF_UNTIL.set(until)
        metrics.BACKOFFS.labels(reason).inc()
        log.warning("upwork_backoff", seconds=round(seconds, 1), reason=reason)
        return until

    async def rate_limited(self, response: httpx.Response) -> UpworkRateLimited:
        """Upwork answered 429: block everyone for as long as it asked, or a minute."""
        retry_after = _retry_after(response)
        seconds = retry_after if retry_after is not None else self.policy.backoff
        reason = "retry_after" if retry_after is not None else "upwork_429"
        await self.block(seconds, reason)
        return UpworkRateLimited(seconds)


@dataclass(frozen=True)
class GateState:
    next_slot: float
    blocked_until: float
    blocked_reason: str | None
    day: str
    day_count: int


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(3600.0, max(1.0, float(value)))
    except ValueError:
        return None


class GatedTransport(httpx.AsyncBaseTransport):
    """Every request to Upwork: first the gate, then the wire; a 429 blocks the host."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: UpworkGate) -> None:
        self._inner = inner
        self._gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._gate.acquire()
        response = await self._inner.handle_async_request(request)
        if response.status_code == 429:
            await response.aclose()
            raise await self._gate.rate_limited(response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
