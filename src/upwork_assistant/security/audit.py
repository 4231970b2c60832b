"""The security log: every security event becomes a database row and a structured log line.

``details`` must never hold a token, an authorization code or a secret (:func:`record`
refuses keys that look like one), nor personal data: who, from where and with which browser
live in their own columns, which account deletion can anonymise.

Tamper evidence: every row carries ``chain_hash = HMAC(key, prev_hash + record)`` where the
record includes a digest of its personal fields, so anonymising them keeps the chain whole.
The HMAC key comes from ``SECRET_KEY``: without it nobody can recompute the chain after an
edit. Signed checkpoints (Ed25519) pin the chain at intervals: retention pruning cuts at a
checkpoint, and deleting the newest rows shows against the latest checkpoint.

Record version 2 (``"v": 2`` inside the chained record) also chains the row's id, and an
anonymisation is itself a chained ``audit.anonymised`` record naming the ids it stripped and
carrying the ``anonymised_at`` it stamped on them; so no column of a row can change unseen.
Version 1 records (written before) still verify: the two record layouts can never produce
the same HMAC input, so a version 2 row cannot pass as version 1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditChainHead, AuditCheckpoint, AuditEvent
from ..db.types import utcnow

log = structlog.get_logger("upwork_assistant.audit")
SECURITY_EVENTS = Counter(
    "upwork_assistant_security_events_total", "Security events recorded, by type", ["type"]
)

FORBIDDEN_KEYS = ("token", "code", "secret", "password", "verifier", "state")
GENESIS = "0" * 64
#: Key under which a Database puts the chain key into every session's ``info``.
CHAIN_KEY = "audit_chain_key"

# Event types (stable names: dashboards and the admin log filter on them)
SIGNIN_SUCCEEDED = "signin.succeeded"
SIGNIN_FAILED = "signin.failed"
SIGNIN_MFA_REQUIRED = "signin.mfa_required"
ACCOUNT_CREATED = "account.created"
ACCOUNT_DELETED = "account.deleted"
PROFILE_UPDATED = "profile.updated"
SESSION_CREATED = "session.created"
SESSION_REVOKED = "session.revoked"
SESSION_REFRESH_REJECTED = "session.refresh_rejected"
SESSION_REFRESH_REUSE = "session.refresh_reuse"
MFA_ENABLED = "mfa.enabled"
MFA_DISABLED = "mfa.disabled"
MFA_FAILED = "mfa.failed"
MFA_LOCKED = "mfa.locked"
MFA_CODE_REUSED = "mfa.code_reused"
MFA_SECRET_UNREADABLE = "mfa.secret_unreadable"  # noqa: S105 - an event name
MFA_BACKUP_CODE_USED = "mfa.backup_code_used"
MFA_BACKUP_CODES_REGENERATED = "mfa.backup_codes_regenerated"
MFA_TOTP_ADDED = "mfa.totp_added"
MFA_TOTP_REMOVED = "mfa.totp_removed"
MFA_REAUTHENTICATED = "mfa.reauthenticated"
MFA_PASSKEY_ADDED = "mfa.passkey_added"
MFA_PASSKEY_RENAMED = "mfa.passkey_renamed"
MFA_PASSKEY_REMOVED = "mfa.passkey_removed"
MFA_PASSKEY_USED = "mfa.passkey_used"
MFA_PASSKEY_REFUSED = "mfa.passkey_refused"
MFA_PASSKEY_COUNTER_REGRESSED = "mfa.passkey_counter_regressed"
UPWORK_REFRESH_FAILED = "upwork.refresh_failed"
UPWORK_REAUTH_REQUIRED = "upwork.reauth_required"
RATE_LIMIT_HIT = "rate_limit.hit"
USER_BLOCKED = "user.blocked"
USER_UNBLOCKED = "user.unblocked"
USER_ROLE_CHANGED = "user.role_changed"
KEY_ROTATION = "keys.rotated"
AUDIT_ANONYMISED = "audit.anonymised"

#: Layout of the chained record written now (see :func:`chain_hash`).
CHAIN_VERSION = 2


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None
    user_agent: str | None


def _check(details: dict[str, Any]) -> None:
    for key in details:
        lowered = key.lower()
        if any(word in lowered for word in FORBIDDEN_KEYS) and lowered != "reason_code":
            raise ValueError(f"audit details may not carry {key!r}")


def pii_digest(event: AuditEvent) -> str:
    fields = [event.user_id, event.session_id, event.ip, event.user_agent]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def chain_hash(
    key: bytes, prev_hash: str, event: AuditEvent, digest: str, version: int = CHAIN_VERSION
) -> str:
    fields: dict[str, Any] = {
        "prev": prev_hash,
        "time": event.created_at.isoformat(),
        "type": event.event_type,
        "details": event.details,
        "pii": digest,
    }
    if version >= 2:
        # The version marker keeps the layouts apart: a v2 HMAC input never equals a v1 one.
        fields.update(v=2, id=event.id)
    record = json.dumps(
        fields,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(key, record.encode(), hashlib.sha256).hexdigest()


async def record(
    db: AsyncSession,
    event_type: str,
    meta: RequestMeta | None,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to ``db``'s current transaction (the caller commits)."""
    _check(details)
    key: bytes = db.info[CHAIN_KEY]
    head = (
        await db.execute(select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update())
    ).scalar_one_or_none()
    if head is None:
        # First chained record (records from before tamper evidence keep their ids).
        last = await db.scalar(select(func.max(AuditEvent.id)))
        head = AuditChainHead(id=1, last_event_id=last or 0, last_hash=GENESIS)
        db.add(head)
    event = AuditEvent(
        # Ids follow the chain and never repeat, even after pruning (SQLite would reuse).
        id=head.last_event_id + 1,
        created_at=utcnow(),
        event_type=event_type,
        user_id=user_id,
        session_id=session_id,
        ip=meta.ip if meta else None,
        user_agent=((meta.user_agent or "")[:512] or None) if meta else None,
        details=json.loads(json.dumps(details)),  # exactly what the database gives back
    )
    event.pii_digest = pii_digest(event)
    event.prev_hash = head.last_hash
    event.chain_hash = chain_hash(key, head.last_hash, event, event.pii_digest)
    db.add(event)
    await db.flush()
    head.last_event_id = event.id
    head.last_hash = event.chain_hash
    SECURITY_EVENTS.labels(event_type).inc()
    log.info(event_type, user_id=user_id, session_id=session_id, ip=event.ip, **details)
    return event


def _id_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as ``[first, last]`` runs: a user's records often come in runs."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


async def anonymise_user(db: AsyncSession, user_id: str) -> int:
    """Strip a deleted user's personal fields from their records; the chain stays valid.

    The anonymisation is recorded as a chained ``audit.anonymised`` record that names the
    stripped ids, so verification can tell an anonymisation from someone blanking (or
    rewriting) the who/where fields of arbitrary rows."""
    # Take the chain's lock first: no record of this user can slip in between listing the
    # ids and stamping them.
    await db.execute(select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update())
    ids = list(
        (await db.execute(select(AuditEvent.id).where(AuditEvent.user_id == user_id))).scalars()
    )
    if not ids:
        return 0
    marker = await record(db, AUDIT_ANONYMISED, None, records=_id_ranges(ids))
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        await db.execute(
            update(AuditEvent)
            .where(AuditEvent.id.in_(ids[start : start + 500]))
            .values(
                user_id=None,
                session_id=None,
                ip=None,
                user_agent=None,
                anonymised_at=marker.created_at,
            )
            .execution_options(synchronize_session=False)
        )
    return len(ids)


# ----- checkpoints, retention, verification ------------------------------------------------


def _statement(event_id: int, chain: str) -> bytes:
    return f"upwork-assistant-audit:{event_id}:{chain}".encode()


async def checkpoint(db: AsyncSession, signing_key: Ed25519PrivateKey) -> AuditCheckpoint | None:
    """Sign the chain's current head, unless the last checkpoint already covers it."""
    head = await db.get(AuditChainHead, 1)
    if head is None or head.last_event_id == 0:
        return None
    last = await db.scalar(select(func.max(AuditCheckpoint.event_id)))
    if last is not None and last >= head.last_event_id:
        return None
    signature = signing_key.sign(_statement(head.last_event_id, head.last_hash)).hex()
    cp = AuditCheckpoint(
        event_id=head.last_event_id, chain_hash=head.last_hash, signature=signature
    )
    db.add(cp)
    return cp


async def prune(db: AsyncSession, older_than: datetime) -> int:
    """Delete records older than the cutoff, up to the newest checkpoint among them, so
    the remaining chain starts at a signed anchor."""
    anchor = await db.scalar(
        select(AuditCheckpoint)
        .join(AuditEvent, AuditEvent.id == AuditCheckpoint.event_id)
        .where(AuditEvent.created_at < older_than)
        .order_by(AuditCheckpoint.event_id.desc())
        .limit(1)
    )
    if anchor is None:
        return 0
    result = await db.execute(delete(AuditEvent).where(AuditEvent.id <= anchor.event_id))
    await db.execute(delete(AuditCheckpoint).where(AuditCheckpoint.event_id < anchor.event_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class VerifyReport:
    records: int = 0
    checkpoints: int = 0
    unchained: int = 0  # records written before tamper evidence existed
    legacy: int = 0  # version 1 records (id and anonymisation not yet chained)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(
    db: AsyncSession, key: bytes, signing_key: Ed25519PrivateKey, batch: int = 1000
) -> VerifyReport:
    """Walk the whole chain; report edited, inserted and deleted records."""
    report = VerifyReport()
    public = signing_key.public_key()
    checkpoints = list(
        (await db.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.event_id))).scalars()
    )
    for cp in checkpoints:
        try:
            public.verify(bytes.fromhex(cp.signature), _statement(cp.event_id, cp.chain_hash))
        except (InvalidSignature, ValueError):
            report.problems.append(f"checkpoint {cp.id} has an invalid signature")
    report.checkpoints = len(checkpoints)
    by_event = {cp.event_id: cp for cp in checkpoints}
    # Which ids each chained anonymisation stripped, and when. The markers themselves are
    # checked like any record when the walk reaches them; a forged one fails there.
    anonymised_by: dict[int, AuditEvent] = {}
    for marker in (
        await db.execute(select(AuditEvent).where(AuditEvent.event_type == AUDIT_ANONYMISED))
    ).scalars():
        ranges = marker.details.get("records") if isinstance(marker.details, dict) else None
        try:
            for first, last in ranges or []:
                for i in range(int(first), int(last) + 1):
                    anonymised_by[i] = marker
        except (TypeError, ValueError):
            report.problems.append(f"record {marker.id}: malformed anonymisation record")

    expected_prev: str | None = None
    last_id = 0
    after = 0
    while True:
        rows = list(
            (
                await db.execute(
                    select(AuditEvent)
                    .where(AuditEvent.id > after)
                    .order_by(AuditEvent.id)
                    .limit(batch)
                )
            ).scalars()
        )
        if not rows:
            break
        for event in rows:
            after = event.id
            if not event.chain_hash:
                report.unchained += 1
                continue
            report.records += 1
            if expected_prev is None:
                anchors = {cp.chain_hash for cp in checkpoints if cp.event_id < event.id}
                if event.prev_hash != GENESIS and event.prev_hash not in anchors:
                    report.problems.append(
                        f"record {event.id}: records before it are missing (no anchor)"
                    )
            elif event.prev_hash != expected_prev:
                report.problems.append(
                    f"record {event.id}: the record before it was deleted, or one was "
                    f"inserted (chain broken after record {last_id})"
                )
            digest = event.pii_digest
            version = CHAIN_VERSION
            if chain_hash(key, event.prev_hash, event, digest) != event.chain_hash:
                if chain_hash(key, event.prev_hash, event, digest, 1) == event.chain_hash:
                    version = 1
                    report.legacy += 1
                else:
                    report.problems.append(f"record {event.id}: edited or forged")
            covering = anonymised_by.get(event.id)
            who = (event.user_id, event.session_id, event.ip, event.user_agent)
            if event.anonymised_at is None:
                if covering is not None:
                    report.problems.append(
                        f"record {event.id}: anonymised by record {covering.id} but its "
                        "anonymisation was undone"
                    )
                elif pii_digest(event) != digest:
                    report.problems.append(f"record {event.id}: who/where fields were edited")
            else:
                if any(value is not None for value in who):
                    report.problems.append(
                        f"record {event.id}: who/where fields were edited (anonymised record)"
                    )
                if covering is not None:
                    if event.anonymised_at != covering.created_at:
                        report.problems.append(
                            f"record {event.id}: anonymisation time differs from record "
                            f"{covering.id}"
                        )
                elif version >= 2:
                    # Version 1 rows anonymised before anonymisations were chained cannot
                    # be told apart from ones blanked later; version 2 rows always can.
                    report.problems.append(
                        f"record {event.id}: marked anonymised, but no chained "
                        "anonymisation covers it"
                    )
            at = by_event.get(event.id)
            if at is not None and at.chain_hash != event.chain_hash:
                report.problems.append(f"record {event.id}: does not match checkpoint {at.id}")
            expected_prev = event.chain_hash
            last_id = event.id
    if checkpoints and checkpoints[-1].event_id > last_id:
        report.problems.append(
            f"records after {last_id} up to {checkpoints[-1].event_id} were deleted "
            f"(checkpoint {checkpoints[-1].id} covers them)"
        )
    return report


def retention_cutoff(days: int) -> datetime:
    return utcnow() - timedelta(days=days)
