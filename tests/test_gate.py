"""The host-wide gate for calls to Upwork, in process on a real database: the pace, the
priority of interactive calls over background ones, the block after a 429, the day."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from upwork_assistant.config import normalise_database_url
from upwork_assistant.db.engine import Database
from upwork_assistant.db.models import UpworkGate as GateRow
from upwork_assistant.upwork.errors import UpworkRateLimited
from upwork_assistant.upwork.gate import GatedTransport, GatePolicy, UpworkGate, background

from .fixtures import drop_database, fresh_database


@pytest.fixture
async def database(tmp_path: Path, migrated_template: Path | str) -> AsyncIterator[Database]:
    test_db = fresh_database(migrated_template, tmp_path)
    db = Database(normalise_database_url(test_db.url))
    yield db
    await db.dispose()
    drop_database(test_db)


def test_policy_from_the_limits_syntax() -> None:
    policy = GatePolicy.from_spec("8/second;35000/day", max_wait=2, backoff=60)
    assert policy.interval == 0.125 and policy.per_day == 35000
    # The tightest sub-day limit sets the pace: 40/minute is one call every 1.5 s.
    assert GatePolicy.from_spec("10/second;40/minute", 0, 60).interval == 1.5


async def test_background_calls_never_queue_ahead_of_interactive_ones(
    database: Database,
) -> None:
    # Slots 2 s apart: the interactive call below still has most of its wait ahead even
    # when the database is slow (with 0.5 s, a busy PostgreSQL left nothing to wait for).
    gate = UpworkGate(database, GatePolicy(interval=2.0, per_day=None, max_wait=6.0))
    first = time.monotonic()
    await gate.acquire()  # the slot is free now
    with background(), pytest.raises(UpworkRateLimited):
        await gate.acquire()  # the next slot is in the future: background work gives way
    started = time.monotonic()
    await gate.acquire()  # interactive: waits for its slot instead
    waited = time.monotonic() - started
    assert waited > 0.3 or started - first > 1.7  # waited, unless its slot had already come
    assert time.monotonic() - first >= 1.9  # either way, not before its slot
    state = await gate.state()
    assert state.next_slot > time.time()


async def test_interactive_calls_refused_when_the_queue_is_longer_than_they_may_wait(
    database: Database,
) -> None:
    gate = UpworkGate(database, GatePolicy(interval=10.0, per_day=None, max_wait=1.0))
    await gate.acquire()
    with pytest.raises(UpworkRateLimited) as refused:
        await gate.acquire()
    assert 8 <= refused.value.retry_after <= 10


async def test_block_holds_every_call_back(database: Database) -> None:
    gate = UpworkGate(database, GatePolicy(interval=0.0, per_day=None, backoff=60))
    await gate.block(60, "upwork_429")
    other = UpworkGate(database, GatePolicy(interval=0.0, per_day=None))  # another process
    with pytest.raises(UpworkRateLimited) as refused:
        await other.acquire()
    assert 58 <= refused.value.retry_after <= 60


async def test_day_budget(database: Database) -> None:
    gate = UpworkGate(database, GatePolicy(interval=0.0, per_day=2))
    await gate.acquire("signin")
    await gate.acquire("signin")
    with pytest.raises(UpworkRateLimited) as refused:
        await gate.acquire("signin")
    assert refused.value.retry_after <= 86_400


async def test_a_429_without_retry_after_blocks_for_the_backoff(database: Database) -> None:
    calls: list[str] = []

    def upwork(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(429, json={"message": "Too Many Requests"})

    gate = UpworkGate(database, GatePolicy(interval=0.0, per_day=None, backoff=45))
    transport = GatedTransport(httpx.MockTransport(upwork), gate)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(UpworkRateLimited) as first:
            await http.post("https://api.upwork.invalid/graphql")
        with pytest.raises(UpworkRateLimited):
            await http.post("https://api.upwork.invalid/graphql")
    assert first.value.retry_after == 45
    assert len(calls) == 1  # the second call never left
    assert (await gate.state()).blocked_reason == "upwork_429"


async def test_sign_ins_keep_a_reserve_of_the_day(database: Database) -> None:
    gate = UpworkGate(database, GatePolicy(interval=0.0, per_day=10))
    for _ in range(8):
        await gate.acquire("user")
    with pytest.raises(UpworkRateLimited):
        await gate.acquire("background")  # 80% of the day
    await gate.acquire("user")
    with pytest.raises(UpworkRateLimited):
        await gate.acquire("user")  # 90% of the day
    await gate.acquire("signin")  # the last tenth is the sign-ins'
    with pytest.raises(UpworkRateLimited):
        await gate.acquire("signin")


async def test_sign_ins_may_queue_where_syncs_may_not(database: Database) -> None:
    # The clock stands still: on a busy host, 100 ms between the two calls below made the
    # second one's slot near enough for a sync.
    now = time.time()
    gate = UpworkGate(database, GatePolicy(interval=0.6, per_day=None, max_wait=1.0), lambda: now)
    await gate.acquire("user")
    with pytest.raises(UpworkRateLimited):
        await gate.acquire("user")  # its slot is 0.6 s away: more than half of max_wait
    started = time.monotonic()
    await gate.acquire("signin")  # waits for it
    assert time.monotonic() - started >= 0.55


async def test_a_call_kept_waiting_for_the_gate_row_measures_its_queue_from_getting_it(
    database: Database,
) -> None:
    """Fifty syncs at once (CI, both passes on two cores): one call waited for the gate
    row longer than it may queue, the calls ahead moved the next slot on from their own
    later "now", and measured from the "now" it read before waiting, an empty queue
    looked too long: 503 upwork_rate_limited. The queue starts when the row is ours."""
    gate = UpworkGate(database, GatePolicy(interval=0.01, per_day=None, max_wait=1.0))
    async with database.write() as ahead:  # the calls ahead of ours hold the row...
        await ahead.execute(update(GateRow).where(GateRow.id == 1).values(next_slot=0.0))
        waiting = asyncio.create_task(gate.acquire("user"))  # may queue 0.5 s
        await asyncio.sleep(1.2)
        assert not waiting.done()
        # ...and take their slots, the last one from its own "now".
        await ahead.execute(
            update(GateRow).where(GateRow.id == 1).values(next_slot=time.time() + 0.01)
        )
    await asyncio.wait_for(waiting, 10)  # took the next slot: the queue was 10 ms long
    assert (await gate.state()).next_slot > time.time() - 1
