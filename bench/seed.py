"""Bulk seeding for the growth benchmark: users, each with an Upwork connection-less
profile and one live session, inserted in large batches straight into our tables."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from upwork_assistant.config import normalise_database_url
from upwork_assistant.db.models import User, UserSession, new_id
from upwork_assistant.db.types import utcnow

BATCH = 5000


async def seed_to(url: str, total: int) -> int:
    """Adds seeded users (with one session each) until the users table holds ``total``."""
    engine = create_async_engine(normalise_database_url(url))
    try:
        async with engine.begin() as conn:
            have = int(await conn.scalar(select(func.count()).select_from(User)) or 0)
        now = utcnow()
        start = have
        while start < total:
            end = min(total, start + BATCH)
            users = [
                {
                    "id": new_id(),
                    "upwork_id": f"seed{n:09d}",
                    "name": f"Seeded Freelancer {n}",
                    "email": f"seed{n}@example.com",
                    "created_at": now,
                    "updated_at": now,
                    "profile_synced_at": now,
                }
                for n in range(start, end)
            ]
            sessions = [
                {
                    "id": new_id(),
                    "user_id": u["id"],
                    "refresh_token_hash": hashlib.sha256(u["id"].encode()).hexdigest(),
                    "created_at": now,
                    "last_seen_at": now,
                    "expires_at": now + timedelta(days=30),
                    "ip": "192.0.2.1",
                    "user_agent": "seed",
                }
                for u in users
            ]
            async with engine.begin() as conn:
                await conn.execute(insert(User), users)
                await conn.execute(insert(UserSession), sessions)
            start = end
        if engine.dialect.name == "sqlite":
            # A live database has its write-ahead log checkpointed as it goes; a bulk seed
            # leaves a huge one behind. Fold it in so reads meet the steady state.
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(0, total - have)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    print(asyncio.run(seed_to(sys.argv[1], int(sys.argv[2]))))
