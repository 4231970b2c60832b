"""The security log: every security event becomes a database row and a structured log line.

``details`` must never hold a token, an authorization code or a secret; :func:`record`
refuses keys that look like one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditEvent

log = structlog.get_logger("upwork_assistant.audit")

FORBIDDEN_KEYS = ("token", "code", "secret", "password", "verifier", "state")

# Event types (stable names: dashboards and the admin log filter on them)
SIGNIN_SUCCEEDED = "signin.succeeded"
SIGNIN_FAILED = "signin.failed"
ACCOUNT_CREATED = "account.created"
PROFILE_UPDATED = "profile.updated"
SESSION_CREATED = "session.created"
SESSION_REVOKED = "session.revoked"
SESSION_REFRESH_REJECTED = "session.refresh_rejected"
SESSION_REFRESH_REUSE = "session.refresh_reuse"
SIGNIN_MFA_REQUIRED = "signin.mfa_required"
MFA_ENABLED = "mfa.enabled"
MFA_DISABLED = "mfa.disabled"
MFA_FAILED = "mfa.failed"
MFA_LOCKED = "mfa.locked"
MFA_BACKUP_CODE_USED = "mfa.backup_code_used"
MFA_BACKUP_CODES_REGENERATED = "mfa.backup_codes_regenerated"
UPWORK_REFRESH_FAILED = "upwork.refresh_failed"
UPWORK_REAUTH_REQUIRED = "upwork.reauth_required"


@dataclass(frozen=True)
class RequestMeta:
    ip: str | None
    user_agent: str | None


def _check(details: dict[str, Any]) -> None:
    for key in details:
        lowered = key.lower()
        if any(word in lowered for word in FORBIDDEN_KEYS) and lowered != "reason_code":
            raise ValueError(f"audit details may not carry {key!r}")


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
    event = AuditEvent(
        event_type=event_type,
        user_id=user_id,
        session_id=session_id,
        ip=meta.ip if meta else None,
        user_agent=(meta.user_agent or "")[:512] or None if meta else None,
        details=details,
    )
    db.add(event)
    log.info(event_type, user_id=user_id, session_id=session_id, ip=event.ip, **details)
    return event
