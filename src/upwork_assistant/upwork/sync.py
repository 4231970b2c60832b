"""Profile sync: keep the local account in step with the Upwork profile (AUTH-REG-002).

Runs at sign-in, on demand, when the dashboard finds the profile stale, and on schedule in
the worker (once per ``PROFILE_SYNC_INTERVAL_SECONDS`` per user). A claim on the user row
(``sync_claimed_until``) makes sure several workers never sync one user twice in a period.
Every run is recorded in ``profile_syncs``; name and email changes go to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import ProfileSync, UpworkConnection, User
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from .api import UpworkAPI
from .errors import UpworkError
from .profile import UpworkProfile, parse_profile
from .vault import ACTIVE

log = structlog.get_logger("upwork_assistant.sync")

#: The profile and the organization whose id goes out as X-Upwork-API-TenantId.
PROFILE_QUERY = "query profile { user { id nid rid name email } organization { id } }"

#: How long a claimed scheduled sync may take before another worker may try.
CLAIM_LEASE = timedelta(minutes=10)


def organization_id(data: dict[str, Any]) -> str | None:
    org = data.get("organization")
    value = org.get("id") if isinstance(org, dict) else None
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None


def apply_profile(user: User, profile: UpworkProfile) -> list[str]:
    """Copy the Upwork profile onto the local account; return the names of changed fields."""
    changed = []
    for attr, value in (
        ("upwork_nid", profile.nid),
        ("upwork_rid", profile.rid),
        ("name", profile.display_name),
        ("email", profile.email),
    ):
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed.append(attr)
    user.profile_synced_at = utcnow()
    return changed


async def record_profile_change(
    db: AsyncSession, user: User, changed: list[str], trigger: str, meta: RequestMeta | None
) -> None:
    if changed:
        await audit.record(
            db, audit.PROFILE_UPDATED, meta, user_id=user.id, fields=changed, source=trigger
        )


@dataclass(frozen=True)
class SyncPolicy:
    interval: timedelta = timedelta(days=1)
    retry_after_failure: timedelta = timedelta(hours=1)


class ProfileSyncService:
    def __init__(self, db: Database, api: UpworkAPI, policy: SyncPolicy) -> None:
        self._db = db
        self._api = api
        self.policy = policy

    async def sync(self, user_id: str, trigger: str, meta: RequestMeta | None = None) -> User:
        """Fetch the profile from Upwork and apply it. Raises UpworkError (recorded)."""
        started = utcnow()
        try:
            data = await self._api.query(user_id, PROFILE_QUERY, allow_partial=True)
            profile = parse_profile(data)
            async with self._db.write() as db:
                user = await db.get(User, user_id)
                if user is None:
                    raise UpworkError("account_gone", "The account no longer exists.", 404)
                if profile.id != user.upwork_id:
                    raise UpworkError(
                        "invalid_profile",
                        "Upwork returned another user's profile for this connection.",
                    )
                changed = apply_profile(user, profile)
                user.sync_claimed_until = None
                org = organization_id(data)
                if org is not None:
                    await db.execute(
                        update(UpworkConnection)
                        .where(UpworkConnection.user_id == user_id)
                        .values(organization_id=org)
                        .execution_options(synchronize_session=False)
                    )
                db.add(
                    ProfileSync(
                        user_id=user_id,
                        trigger=trigger,
                        started_at=started,
                        finished_at=utcnow(),
                        succeeded=True,
                        changed=changed,
                    )
                )
                await record_profile_change(db, user, changed, trigger, meta)
        except UpworkError as exc:
            await self._record_failure(user_id, trigger, started, exc.code)
            raise
        log.info("profile_synced", user_id=user_id, trigger=trigger, changed=changed)
        return user

    async def _record_failure(
        self, user_id: str, trigger: str, started: datetime, code: str
    ) -> None:
        async with self._db.write() as db:
            if await db.get(User, user_id) is None:
                return
            db.add(
                ProfileSync(
                    user_id=user_id,
                    trigger=trigger,
                    started_at=started,
                    finished_at=utcnow(),
                    succeeded=False,
                    error=code,
                )
            )
            if trigger in ("scheduled", "stale"):
                # Back off before the next automatic attempt for this user.
                await db.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(sync_claimed_until=utcnow() + self.policy.retry_after_failure)
                    .execution_options(synchronize_session=False)
                )
        log.warning("profile_sync_failed", user_id=user_id, trigger=trigger, error=code)

    # ----- scheduled and stale syncs -------------------------------------------------------

    def _due(self, now: datetime) -> Any:
        return and_(
            or_(
                User.profile_synced_at.is_(None),
                User.profile_synced_at < now - self.policy.interval,
            ),
            or_(User.sync_claimed_until.is_(None), User.sync_claimed_until < now),
        )

    async def claim(self, user_id: str) -> bool:
        """Claim one user's due sync; False when it is not due or another worker has it."""
        now = utcnow()
        async with self._db.write() as db:
            result = await db.execute(
                update(User)
                .where(User.id == user_id, self._due(now))
                .values(sync_claimed_until=now + CLAIM_LEASE)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def due_users(self, limit: int = 500) -> list[str]:
        now = utcnow()
        async with self._db.session() as db:
            rows = await db.execute(
                select(User.id)
                .join(UpworkConnection, UpworkConnection.user_id == User.id)
                .where(UpworkConnection.status == ACTIVE, self._due(now))
                .order_by(User.profile_synced_at.is_not(None), User.profile_synced_at)
                .limit(limit)
            )
            return [r[0] for r in rows]

    async def sync_if_due(self, user_id: str, trigger: str) -> bool:
        """Sync the user when due and not claimed elsewhere. True when a sync ran and
        succeeded; failures are recorded, logged and swallowed (the next period retries)."""
        if not await self.claim(user_id):
            return False
        try:
            await self.sync(user_id, trigger)
        except UpworkError:
            return False
        return True

    async def run_scheduled(self) -> int:
        """One pass of the daily sync. Returns how many users were synced."""
        synced = 0
        for user_id in await self.due_users():
            synced += await self.sync_if_due(user_id, "scheduled")
        return synced
