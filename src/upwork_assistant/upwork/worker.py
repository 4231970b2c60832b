"""The background worker: keeps every Upwork connection alive, purges Upwork content past
its 24 hours (Upwork's API terms; see sync.py), and looks after the security log (signed
checkpoints, retention). It fetches no content: that happens when users use the product.

A single-process ``serve`` runs this loop inside by default (``WORKER_IN_SERVE``), so a
one-machine install never silently skips it; with ``serve --workers N`` run
``upwork-assistant worker`` beside it. Several workers may run at once: leases in the
database make sure each refresh happens once. Its calls to Upwork are background work:
they never queue for the host's budget ahead of sign-ins (gate.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from ..db import retention
from ..db.engine import Database
from ..db.models import ConnectionStatus, UpworkConnection
from ..db.types import utcnow
from ..security import audit
from .errors import UpworkError
from .gate import background
from .sync import ProfileSyncService
from .vault import TokenVault

log = structlog.get_logger("upwork_assistant.worker")


@dataclass
class PassResult:
    renewed: int = 0
    purged: int = 0
    pruned: int = 0


class Worker:
    def __init__(
        self,
        db: Database,
        vault: TokenVault,
        sync: ProfileSyncService,
        keepalive_margin: timedelta,
        interval: float,
        audit_signing_key: Ed25519PrivateKey,
        audit_retention_days: int,
    ) -> None:
        self._db = db
        self._audit_signing_key = audit_signing_key
        self.audit_retention_days = audit_retention_days
        self._vault = vault
        self._sync = sync
        self.keepalive_margin = keepalive_margin
        self.interval = interval

    async def renew_expiring(self) -> int:
        """Refresh, ahead of time, every connection whose refresh token would die within
        the margin: an idle user never has to reconnect. (The refresh token is not Upwork
        content: keeping the connection alive is not caching.)"""
        renew_before = utcnow() + self.keepalive_margin
        async with self._db.session() as db:
            rows = await db.execute(
                select(UpworkConnection.user_id).where(
                    UpworkConnection.status == ConnectionStatus.ACTIVE,
                    UpworkConnection.refresh_expires_at.is_not(None),
                    UpworkConnection.refresh_expires_at < renew_before,
                )
            )
            user_ids = [r[0] for r in rows]
        renewed = 0
        for user_id in user_ids:
            try:
                with background():
                    await self._vault.access_token(user_id, renew_before=renew_before)
                renewed += 1
            except UpworkError as exc:  # recorded by the vault; try again next pass
                log.warning("keepalive_failed", user_id=user_id, error=exc.code)
        return renewed

    async def prune_tables(self) -> int:
        """Delete rows past their useful life (db/retention.py says which and why)."""
        async with self._db.write() as db:
            counts = await retention.prune(db, utcnow())
        if any(counts.values()):
            log.info("tables_pruned", **counts)
        return sum(counts.values())

    async def audit_upkeep(self) -> int:
        """Sign a checkpoint of the security log, then prune what is past retention."""
        async with self._db.write() as db:
            await audit.checkpoint(db, self._audit_signing_key)
            return await audit.prune(db, audit.retention_cutoff(self.audit_retention_days))

    async def run_once(self) -> PassResult:
        result = PassResult(renewed=await self.renew_expiring())
        result.purged = await self._sync.purge_expired(timedelta(seconds=self.interval))
        result.pruned = await self.prune_tables() + await self.audit_upkeep()
        log.info("worker_pass", renewed=result.renewed, purged=result.purged, pruned=result.pruned)
        return result

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad pass must not end the worker
                log.error("worker_pass_failed", error_type=type(exc).__name__)
            await asyncio.sleep(self.interval)
