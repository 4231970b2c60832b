"""Server-side state of "Sign in with Upwork" attempts, bound to the browser by a cookie.

The cookie holds only a signed opaque id; the PKCE verifier and the state stay on the
server. Each attempt gets its own cookie, named after its state, so two tabs signing in at
once do not overwrite each other. A flow is single use and expires after 10 minutes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..config import CALLBACK_PATH
from ..db.models import OAuthFlow
from ..db.types import utcnow
from ..security.keys import constant_time_equal, mac
from .errors import AuthError

COOKIE_PATH = CALLBACK_PATH
#: Consumed and expired flows are kept this long to tell "used twice" from "unknown".
KEEP_AFTER_EXPIRY = timedelta(days=1)


class FlowStore:
    def __init__(self, key: bytes, ttl_seconds: int, cookie_prefix: str) -> None:
        self._key = key
        self.ttl = timedelta(seconds=ttl_seconds)
        self.cookie_prefix = cookie_prefix

    def cookie_name(self, state: str) -> str:
        return self.cookie_prefix + mac(self._key, f"name:{state}")[:16]

    @staticmethod
    def _row_id(flow_id: str) -> str:
        return hashlib.sha256(flow_id.encode()).hexdigest()

    async def start(
        self, db: AsyncSession, state: str, code_verifier: str, return_to: str | None = None
    ) -> tuple[str, str]:
        """Record a new attempt; return (cookie name, cookie value). The caller commits."""
        now = utcnow()
        await db.execute(delete(OAuthFlow).where(OAuthFlow.expires_at < now - KEEP_AFTER_EXPIRY))
        flow_id = secrets.token_urlsafe(32)
        db.add(
            OAuthFlow(
                id=self._row_id(flow_id),
                state_hash=mac(self._key, f"state:{state}"),
                code_verifier=code_verifier,
                return_to=return_to,
                created_at=now,
                expires_at=now + self.ttl,
            )
        )
        return self.cookie_name(state), f"{flow_id}.{mac(self._key, f'cookie:{flow_id}')}"

    async def consume(
        self, db: AsyncSession, cookie_value: str, state: str
    ) -> tuple[str, str | None]:
        """Check the callback's state against this browser's flow and use the flow up.

        Returns the PKCE verifier and where to go afterwards; raises AuthError with the
        reason otherwise. The caller commits before it calls Upwork, so a replay racing this
        request fails."""
        flow_id, _, signature = cookie_value.partition(".")
        if not flow_id or not constant_time_equal(signature, mac(self._key, f"cookie:{flow_id}")):
            raise AuthError("state_invalid")
        flow = await db.get(OAuthFlow, self._row_id(flow_id))
        if flow is None:
            raise AuthError("flow_expired")
        if not constant_time_equal(flow.state_hash, mac(self._key, f"state:{state}")):
            raise AuthError("state_invalid")
        if flow.consumed_at is not None:
            raise AuthError("state_reused")
        now = utcnow()
        if flow.expires_at <= now:
            raise AuthError("flow_expired")
        result = await db.execute(
            update(OAuthFlow)
            .where(OAuthFlow.id == flow.id, OAuthFlow.consumed_at.is_(None))
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise AuthError("state_reused")
        return flow.code_verifier, flow.return_to
