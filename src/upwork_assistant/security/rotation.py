"""Key rotation for encryption at rest.

Every ciphertext is stored beside the id of the key that made it. Rotating means: put a new
key first in ``TOKEN_ENCRYPTION_KEYS`` (on every instance), then re-encrypt every stored
ciphertext under it, in small committed batches, so an interrupted run simply continues
where it stopped. A key may leave the ring once ``keys status`` shows no ciphertext using it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.engine import Database
from ..db.models import JwtSigningKey, UpworkConnection, User, UserSession
from .aad import jwt_key_aad, mfa_secret_aad, upwork_token_aad
from .keys import DecryptionError, KeyRing, Sealed


@dataclass(frozen=True)
class CipherColumn:
    model: Any
    pk: str
    kid: str
    ct: str
    aad: Callable[[Any], str] | None  # None: short-lived, cleared instead of re-encrypted

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.ct}"


#: Every ciphertext column of the database, with the AAD its writer sealed it with (one
#: function of ``security/aad.py`` per kind). A new kind of ciphertext must be listed here,
#: or ``keys rotate`` leaves it on the old key (``tests/test_aad.py`` checks).
COLUMNS = [
    CipherColumn(
        UpworkConnection,
        "user_id",
        "access_token_kid",
        "access_token_ct",
        lambda r: upwork_token_aad(r.user_id, "access"),
    ),
    CipherColumn(
        UpworkConnection,
        "user_id",
        "refresh_token_kid",
        "refresh_token_ct",
        lambda r: upwork_token_aad(r.user_id, "refresh"),
    ),
    # The pending secret shares the active one's AAD: confirming moves the ciphertext as is.
    CipherColumn(User, "id", "mfa_secret_kid", "mfa_secret_ct", lambda r: mfa_secret_aad(r.id)),
    CipherColumn(User, "id", "mfa_pending_kid", "mfa_pending_ct", lambda r: mfa_secret_aad(r.id)),
    CipherColumn(JwtSigningKey, "kid", "private_kid", "private_ct", lambda r: jwt_key_aad(r.kid)),
    # The refresh grace pair lives a few seconds: cleared, not re-encrypted.
    CipherColumn(UserSession, "id", "grace_kid", "grace_ct", None),
]


async def key_usage(db: AsyncSession) -> dict[str, Counter[str]]:
    """For each key id, how many ciphertexts of each kind use it."""
    usage: dict[str, Counter[str]] = {}
    for col in COLUMNS:
        kid = getattr(col.model, col.kid)
        rows = await db.execute(select(kid, func.count()).where(kid.is_not(None)).group_by(kid))
        for key_id, n in rows:
            usage.setdefault(key_id, Counter())[col.label] += n
    return usage


async def unknown_keys(db: AsyncSession, ring: KeyRing) -> dict[str, int]:
    """Key ids used by stored ciphertexts but missing from the ring (data that cannot be
    read: the ring must keep them until ``keys rotate`` has moved everything)."""
    usage = await key_usage(db)
    return {kid: sum(c.values()) for kid, c in usage.items() if kid not in ring.key_ids}


@dataclass
class Rotation:
    """What ``keys rotate`` did: ciphertexts moved per kind, and rows it could not read
    (a key missing from the ring, or a damaged row): left as they are, and reported."""

    moved: Counter[str] = field(default_factory=Counter)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (kind, row key)


async def reencrypt(database: Database, ring: KeyRing, batch: int = 200) -> Rotation:
    """Move every ciphertext to the ring's primary key; resumable; returns counts."""
    done = Rotation()
    for col in COLUMNS:
        kid_attr = getattr(col.model, col.kid)
        ct_attr = getattr(col.model, col.ct)
        pk_attr = getattr(col.model, col.pk)
        skipped: list[Any] = []
        while True:
            async with database.write() as db:
                query = select(col.model).where(kid_attr.is_not(None), kid_attr != ring.primary_id)
                if skipped:
                    query = query.where(pk_attr.not_in(skipped))
                rows = list((await db.execute(query.limit(batch))).scalars())
                if not rows:
                    break
                for row in rows:
                    old_kid, old_ct = getattr(row, col.kid), getattr(row, col.ct)
                    values: dict[str, str | bytes | None]
                    if col.aad is None:
                        values = {col.kid: None, col.ct: None}
                    else:
                        try:
                            plain = ring.decrypt(Sealed(old_kid, old_ct), aad=col.aad(row))
                        except DecryptionError:
                            # One bad row must not stop the rotation of all the others.
                            skipped.append(getattr(row, col.pk))
                            done.unreadable.append((col.label, str(getattr(row, col.pk))))
                            continue
                        sealed = ring.encrypt(plain, aad=col.aad(row))
                        values = {col.kid: sealed.key_id, col.ct: sealed.ciphertext}
                    # Compare-and-swap: a value written meanwhile (already new) is kept.
                    await db.execute(
                        update(col.model)
                        .where(
                            and_(
                                pk_attr == getattr(row, col.pk),
                                kid_attr == old_kid,
                                ct_attr == old_ct,
                            )
                        )
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    )
                    done.moved[col.label] += 1
    return done
