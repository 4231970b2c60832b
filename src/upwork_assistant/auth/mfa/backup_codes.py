"""The backup-codes factor: ten single-use codes, shown once, kept as argon2 hashes. Spending
one is a conditional UPDATE (still unused at that moment), so a code is accepted at most
once however many requests race."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import MfaBackupCode
from ...db.types import utcnow

BACKUP_CODES = 10
BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
BACKUP_LENGTH = 10


def new_backup_code() -> str:
    return "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH))


def format_backup_code(code: str) -> str:
    half = BACKUP_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


class BackupCodes:
    def __init__(self) -> None:
        # Backup codes are 50 random bits: a light argon2 suffices and keeps checks fast.
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

    async def replace(self, db: AsyncSession, user_id: str) -> list[str]:
        """A new set (in the caller's transaction); the old ones stop working."""
        codes = [new_backup_code() for _ in range(BACKUP_CODES)]
        hashes = await asyncio.gather(*[asyncio.to_thread(self._hasher.hash, c) for c in codes])
        await db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))
        db.add_all(MfaBackupCode(user_id=user_id, code_hash=h) for h in hashes)
        return [format_backup_code(c) for c in codes]

    @staticmethod
    async def delete_all(db: AsyncSession, user_id: str) -> None:
        await db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))

    @staticmethod
    async def left(db: AsyncSession, user_id: str) -> int:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(MfaBackupCode)
                .where(MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None))
            )
            or 0
        )

    async def use(self, db: AsyncSession, user_id: str, code: str) -> bool:
        rows = (
            (
                await db.execute(
                    select(MfaBackupCode).where(
                        MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None)
                    )
                )
            )
            .scalars()
            .all()
        )
        for row in rows:
            try:
                await asyncio.to_thread(self._hasher.verify, row.code_hash, code)
            except VerificationError:
                continue
            # Spent only if still unused at this moment: a racing request that matched the
            # same code gets rowcount 0 and is refused.
            result = await db.execute(
                update(MfaBackupCode)
                .where(MfaBackupCode.id == row.id, MfaBackupCode.used_at.is_(None))
                .values(used_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))
        return False
