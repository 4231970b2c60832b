"""The token vault: a user's Upwork tokens, encrypted at rest with the key ring.

Tokens are decrypted only in memory and only when used. The associated data binds every
ciphertext to its user and field, so a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import UpworkConnection
from ..db.types import utcnow
from ..security.keys import KeyRing, Sealed
from .oauth import TokenSet


def _aad(user_id: str, field: str) -> str:
    return f"upwork-token:{user_id}:{field}"


@dataclass(frozen=True)
class UpworkTokens:
    access_token: str
    refresh_token: str | None
    access_expires_at: datetime | None

    def __repr__(self) -> str:
        return f"UpworkTokens(access_expires_at={self.access_expires_at!r})"


class TokenVault:
    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring

    async def store(self, db: AsyncSession, user_id: str, tokens: TokenSet) -> UpworkConnection:
        """Put the token pair on the user's connection (in the caller's transaction)."""
        access = self._keyring.encrypt(tokens.access_token, aad=_aad(user_id, "access"))
        refresh = (
            self._keyring.encrypt(tokens.refresh_token, aad=_aad(user_id, "refresh"))
            if tokens.refresh_token
            else None
        )
        now = utcnow()
        values = {
            "access_token_kid": access.key_id,
            "access_token_ct": access.ciphertext,
            "refresh_token_kid": refresh.key_id if refresh else None,
            "refresh_token_ct": refresh.ciphertext if refresh else None,
            "token_type": tokens.token_type,
            "scope": tokens.scope,
            "access_expires_at": tokens.access_expires_at,
            "refresh_expires_at": tokens.refresh_expires_at,
            "status": "active",
            "updated_at": now,
        }
        # An upsert: two sign-ins of one user racing each other both land, last one wins.
        insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = insert(UpworkConnection).values(user_id=user_id, created_at=now, **values)
        await db.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_=values))
        conn = await db.get(UpworkConnection, user_id, populate_existing=True)
        assert conn is not None
        return conn

    def open(self, conn: UpworkConnection) -> UpworkTokens:
        """Decrypt a connection's tokens, in memory, for immediate use."""
        access = self._keyring.decrypt(
            Sealed(conn.access_token_kid, conn.access_token_ct),
            aad=_aad(conn.user_id, "access"),
        )
        refresh = None
        if conn.refresh_token_kid and conn.refresh_token_ct:
            refresh = self._keyring.decrypt(
                Sealed(conn.refresh_token_kid, conn.refresh_token_ct),
                aad=_aad(conn.user_id, "refresh"),
            )
        return UpworkTokens(access, refresh, conn.access_expires_at)
