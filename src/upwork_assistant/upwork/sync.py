"""Profile sync and the 24-hour content cache (AUTH-REG-002, Upwork's API terms).

Upwork's API terms let an application cache Upwork content "for no more than 24 hours,
after which you shall permanently delete the cache", and forbid extending the cache "by
re-fetching solely to refresh the timer" (API Terms of Use, section 8.3 in the 2026
version; Upwork support, "What are the API requests limits": "Caching API responses for
more than 24 hours is not allowed"). So:

- Upwork content (name, nickname, photo, profile key, email, the freelancer profile) is
  stored with the time each group was fetched; the worker purges a group 24 hours after
  its fetch
  (:meth:`ProfileSyncService.purge_expired`). Only the Upwork user id, which identifies
  the account, is kept for as long as the account (and the organization id beside the
  tokens, which every call to Upwork needs as ``X-Upwork-API-TenantId``).
- Content is fetched again when a signed-in user uses the product and it is older than
  the sync interval (:meth:`ProfileSyncService.refresh_if_stale`), at sign-in, and when
  the user asks; never on a timer alone.
- One request per sync when the key grants every field; the fields its scopes refuse are
  dropped and asked again without them (queries.py), and remembered on the connection so
  the dashboard and the API can say what the key does not grant.

A claim on the user row (``sync_claimed_until``) makes sure one sync runs at a time.
Every run is recorded in ``profile_syncs``; changes of values already held go to the
security log (field names only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import (
    ConnectionStatus,
    FreelancerProfileCache,
    ProfileSync,
    SyncTrigger,
    UpworkConnection,
    User,
)
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..security.ratelimit import Budget, RateLimitExceeded
from .api import UpworkAPI
from .errors import UpworkError, UpworkRateLimited
from .freelancer import (
    DEFAULT_IMAGE_HOSTS,
    FreelancerProfile,
    FreelancerView,
    changed_parts,
    freelancer_view,
    parse_freelancer,
)
from .profile import UpworkProfile, parse_profile
from .queries import FREELANCER_PARTS, PROFILE, Fetched, features_of, fetch_granted

log = structlog.get_logger("upwork_assistant.sync")

#: How long a claimed sync may take before another process may try.
CLAIM_LEASE = timedelta(minutes=10)

#: How long refused scopes are taken as known before a sync asks for everything again.
GRANTS_RECHECK = timedelta(days=1)

#: The identity group of Upwork content: fetched together, purged together.
IDENTITY_FIELDS = ("upwork_nid", "upwork_rid", "name", "photo_url", "profile_key")


def organization_id(data: dict[str, Any]) -> str | None:
    org = data.get("organization")
    value = org.get("id") if isinstance(org, dict) else None
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None


def apply_profile(
    user: User, profile: UpworkProfile, refused: list[str] | None = None
) -> list[str]:
    """Copy fresh Upwork content onto the local account, stamping each group's fetch time;
    return the names of fields whose held value changed (a purged field coming back is not
    a change). What the key's scopes refused is not held at all."""
    refused_set = set(refused or ())
    now = utcnow()
    fresh: dict[str, Any] = {
        "upwork_nid": profile.nid,
        "upwork_rid": profile.rid,
        "name": profile.name or None,
        "photo_url": profile.photo_url,
        "profile_key": profile.profile_key,
        "email": None if "User.email" in refused_set else profile.email,
    }
    changed = []
    for attr, value in fresh.items():
        before = getattr(user, attr)
        if before != value:
            setattr(user, attr, value)
            if before is not None:
                changed.append(attr)
    user.identity_fetched_at = now
    user.email_fetched_at = None if "User.email" in refused_set else now
    user.profile_synced_at = now
    return changed


@dataclass(frozen=True)
class FreelancerAnswer:
    """``asked`` False: the key's scopes refuse the profile. ``profile`` None when asked:
    the account has none (a client's account, a normal case)."""

    asked: bool
    profile: FreelancerProfile | None = None


def freelancer_of(fetched: Fetched, image_hosts: tuple[str, ...]) -> FreelancerAnswer:
    """What the answer says of the freelancer profile: not asked (the key's scopes refuse
    it), absent (a client's account), or the validated profile. GraphQL answers every
    field it was asked, null or not, so a missing key means the field was left out."""
    user = fetched.data.get("user")
    if not isinstance(user, dict) or "freelancerProfile" not in user:
        return FreelancerAnswer(asked=False)
    return FreelancerAnswer(
        asked=True, profile=parse_freelancer(user["freelancerProfile"], image_hosts)
    )


async def store_freelancer(db: AsyncSession, user_id: str, answer: FreelancerAnswer) -> list[str]:
    """Keep the freelancer profile as this fetch found it (in the caller's transaction),
    starting its 24 hours; return which of title, rate and skills changed."""
    row = await db.get(FreelancerProfileCache, user_id)
    if not answer.asked:
        # The key no longer grants the profile: what we held of it goes.
        if row is not None:
            await db.delete(row)
        return []
    before = (
        FreelancerProfile.model_validate(row.data)
        if row is not None and row.has_profile and row.data
        else None
    )
    data = None if answer.profile is None else answer.profile.model_dump(mode="json")
    if row is None:
        db.add(
            FreelancerProfileCache(
                user_id=user_id, fetched_at=utcnow(), has_profile=data is not None, data=data
            )
        )
    else:
        row.fetched_at, row.has_profile, row.data = utcnow(), data is not None, data
    if answer.profile is not None and answer.profile.invalid:
        log.warning(
            "upwork_profile_values_dropped",
            user_id=user_id,
            fields=answer.profile.invalid,
        )
    return [] if answer.profile is None else changed_parts(before, answer.profile)


async def record_profile_change(
    db: AsyncSession, user: User, changed: list[str], trigger: SyncTrigger, meta: RequestMeta | None
) -> None:
    if changed:
        await audit.record(
            db, audit.PROFILE_UPDATED, meta, user_id=user.id, fields=changed, source=trigger
        )


def log_refused(user_id: str | None, fetched: Fetched, trigger: SyncTrigger) -> None:
    if fetched.refused:
        log.warning(
            "upwork_scope_missing",
            user_id=user_id,
            trigger=trigger,
            refused=fetched.refused,
            upwork_message=fetched.upwork_message,
        )
    if fetched.nulled:
        # Upwork broke its own schema's promise; asked again without these fields.
        log.warning("upwork_null_fields", user_id=user_id, trigger=trigger, fields=fetched.nulled)


def grants_of(conn: UpworkConnection | None) -> dict[str, Any]:
    """What the API key's scopes refused at the last fetch, in words an operator acts on."""
    refused = list(conn.missing_grants or []) if conn is not None else []
    features = features_of(refused)
    checked = conn.grants_checked_at if conn is not None else None
    return {
        "missing_fields": refused,
        "missing_features": features,
        "checked_at": checked.isoformat() if checked is not None else None,
        "message": (
            "This installation's Upwork API key does not grant access to: "
            + ", ".join(features)
            + " (the fields are in missing_fields). The operator can add the missing "
            "permissions to the key on Upwork (docs/upwork-setup.md); "
            "`upwork-assistant upwork check` lists them."
        )
        if refused
        else None,
    }


@dataclass(frozen=True)
class SyncPolicy:
    interval: timedelta = timedelta(hours=6)  # content older than this is fetched on use
    retry_after_failure: timedelta = timedelta(hours=1)
    content_ttl: timedelta = timedelta(hours=24)  # Upwork's terms: at most 24 hours
    #: Where portraits may come from (Settings.image_hosts).
    image_hosts: tuple[str, ...] = DEFAULT_IMAGE_HOSTS


class ProfileSyncService:
    def __init__(self, db: Database, api: UpworkAPI, policy: SyncPolicy) -> None:
        self._db = db
        self._api = api
        self.policy = policy

    async def sync(
        self, user_id: str, trigger: SyncTrigger, meta: RequestMeta | None = None
    ) -> User:
        """Fetch the profile from Upwork and apply it. Raises UpworkError (recorded)."""
        started = utcnow()

        async def run(query: str) -> dict[str, Any]:
            return await self._api.query(user_id, query, allow_partial=True)

        try:
            known, known_null = await self._known(user_id)
            fetched = await fetch_granted(run, PROFILE, known_refused=known, known_null=known_null)
            profile = parse_profile(fetched.data)
            freelancer = freelancer_of(fetched, self.policy.image_hosts)
            async with self._db.write() as db:
                user = await db.get(User, user_id)
                if user is None:
                    raise UpworkError("account_gone", "The account no longer exists.", 404)
                if profile.id != user.upwork_id:
                    raise UpworkError(
                        "invalid_profile",
                        "Upwork returned another user's profile for this connection.",
                    )
                changed = apply_profile(user, profile, fetched.refused)
                changed += await store_freelancer(db, user_id, freelancer)
                user.sync_claimed_until = None
                await db.execute(
                    update(UpworkConnection)
                    .where(UpworkConnection.user_id == user_id)
                    .values(
                        organization_id=organization_id(fetched.data),
                        missing_grants=fetched.refused,
                        null_fields=fetched.nulled,
                        # Only a query that asked for everything checks the grants anew.
                        **({} if known or known_null else {"grants_checked_at": utcnow()}),
                    )
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
            await self._record_failure(user_id, trigger, started, exc)
            raise
        log_refused(user_id, fetched, trigger)
        log.info("profile_synced", user_id=user_id, trigger=trigger, changed=changed)
        return user

    async def _known(self, user_id: str) -> tuple[list[str], list[str]]:
        """What the key refused, and what Upwork answered null, at the last check while
        that check is recent: asking without them keeps a sync to one request. Sign-in
        always asks for everything, so a key given more scopes shows at the next sign-in
        (or after a day)."""
        async with self._db.session() as db:
            conn = await db.get(UpworkConnection, user_id)
        if conn is None or conn.grants_checked_at is None:
            return [], []
        if utcnow() - conn.grants_checked_at > GRANTS_RECHECK:
            return [], []
        return list(conn.missing_grants or []), list(conn.null_fields or [])

    async def _record_failure(
        self, user_id: str, trigger: SyncTrigger, started: datetime, exc: UpworkError
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
                    error=exc.code,
                )
            )
            if trigger == SyncTrigger.STALE:
                # Back off before the next automatic attempt for this user: as long as
                # Upwork's block lasts when it is one, else the retry period.
                wait = (
                    timedelta(seconds=exc.retry_after)
                    if isinstance(exc, UpworkRateLimited)
                    else self.policy.retry_after_failure
                )
                await db.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(sync_claimed_until=utcnow() + wait)
                    .execution_options(synchronize_session=False)
                )
        log.warning(
            "profile_sync_failed",
            user_id=user_id,
            trigger=trigger,
            error=exc.code,
            upwork_message=exc.upwork_message,
        )

    async def connection(self, user_id: str) -> UpworkConnection | None:
        async with self._db.session() as db:
            return await db.get(UpworkConnection, user_id)

    async def last_sync(self, user_id: str) -> ProfileSync | None:
        async with self._db.session() as db:
            return (
                await db.execute(
                    select(ProfileSync)
                    .where(ProfileSync.user_id == user_id)
                    .order_by(ProfileSync.started_at.desc(), ProfileSync.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()

    def due_on_use(self, user: User, conn: UpworkConnection | None) -> bool:
        """The user is using the product: is their Upwork content to be fetched again
        (stale, and a working connection to fetch it with)?"""
        return conn is not None and conn.status == ConnectionStatus.ACTIVE and self.is_stale(user)

    async def sync_requested(self, budget: Budget, user_id: str, meta: RequestMeta | None) -> User:
        """A sync the user asked for: within their share of the Upwork budget
        (RateLimitExceeded beyond it), then from Upwork (UpworkError when that fails)."""
        retry_after = await budget.hit(user_id)
        if retry_after:
            raise RateLimitExceeded(retry_after, "Too many sync requests. Please wait a moment.")
        return await self.sync(user_id, SyncTrigger.MANUAL, meta)

    async def freelancer(self, user_id: str, missing_grants: list[str]) -> FreelancerView:
        """The kept freelancer profile and what of it the key's scopes refuse."""
        async with self._db.session() as db:
            row = await db.get(FreelancerProfileCache, user_id)
        unavailable = [p for p in features_of(missing_grants) if p in FREELANCER_PARTS]
        kept = None if row is None else (row.fetched_at, row.has_profile, row.data)
        return freelancer_view(kept, unavailable, self.policy.content_ttl)

    # ----- the content cache: fetched on use, purged after 24 hours -----------------------

    def is_stale(self, user: User) -> bool:
        """True when the user's Upwork content is missing or older than the sync interval."""
        fetched = user.identity_fetched_at
        return fetched is None or utcnow() - fetched > self.policy.interval

    def expires_at(self, user: User) -> datetime | None:
        fetched = user.identity_fetched_at
        return None if fetched is None else fetched + self.policy.content_ttl

    def _due(self, now: datetime) -> Any:
        return and_(
            or_(
                User.identity_fetched_at.is_(None),
                User.identity_fetched_at < now - self.policy.interval,
            ),
            or_(User.sync_claimed_until.is_(None), User.sync_claimed_until < now),
        )

    async def claim(self, user_id: str) -> bool:
        """Claim one user's due sync; False when it is not due or another process has it."""
        now = utcnow()
        async with self._db.write() as db:
            result = await db.execute(
                update(User)
                .where(User.id == user_id, self._due(now))
                .values(sync_claimed_until=now + CLAIM_LEASE)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def refresh_if_stale(self, user_id: str) -> bool:
        """The user is using the product: fetch their Upwork content again when it is due
        and no other process is at it. True when a sync ran and succeeded; failures are
        recorded, logged and swallowed (the next use retries after a pause)."""
        if not await self.claim(user_id):
            return False
        try:
            await self.sync(user_id, SyncTrigger.STALE)
        except UpworkError:
            return False
        return True

    async def purge_expired(self, margin: timedelta = timedelta(0)) -> int:
        """Delete Upwork content that is ``content_ttl`` old (Upwork's terms: 24 hours at
        most), or will be before ``margin`` has passed: the worker passes its interval, so
        nothing outlives the limit until its next pass. Returns how many groups (identity,
        email, freelancer profile) were deleted."""
        cutoff = utcnow() - self.policy.content_ttl + margin
        async with self._db.write() as db:
            identity = await db.execute(
                update(User)
                .where(User.identity_fetched_at < cutoff)
                .values({**dict.fromkeys(IDENTITY_FIELDS), "identity_fetched_at": None})
                .execution_options(synchronize_session=False)
            )
            email = await db.execute(
                update(User)
                .where(
                    or_(
                        User.email_fetched_at < cutoff,
                        and_(User.email_fetched_at.is_(None), User.email.is_not(None)),
                    )
                )
                .values(email=None, email_fetched_at=None)
                .execution_options(synchronize_session=False)
            )
            freelancer = await db.execute(
                delete(FreelancerProfileCache)
                .where(FreelancerProfileCache.fetched_at < cutoff)
                .execution_options(synchronize_session=False)
            )
        purged = sum(
            int(getattr(result, "rowcount", 0) or 0) for result in (identity, email, freelancer)
        )
        if purged:
            log.info("upwork_content_purged", groups=purged)
        return purged
