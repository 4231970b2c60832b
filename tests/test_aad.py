"""The associated data of every ciphertext kind never changes (stored ciphertexts were sealed
with it), and key rotation builds the same AAD as the writers, for every kind."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import LargeBinary

from upwork_assistant.db import models
from upwork_assistant.security import rotation
from upwork_assistant.security.aad import jwt_key_aad, mfa_secret_aad, upwork_token_aad
from upwork_assistant.security.keys import KeyRing, Sealed

USER_ID = "0b6f3c5e-8a2d-4f1e-9c7b-2d4e6f8a0b1c"
KID = "Zq3k9XyLmN0pQrStUvWx"

# The expected values are the literal formats of the databases already deployed: a
# change here means stored ciphertexts no longer decrypt.


@pytest.mark.parametrize(
    ("aad", "expected"),
    [
        (upwork_token_aad(USER_ID, "access"), f"upwork-token:{USER_ID}:access"),
        (upwork_token_aad(USER_ID, "refresh"), f"upwork-token:{USER_ID}:refresh"),
        (upwork_token_aad("u1", "access"), "upwork-token:u1:access"),
        (upwork_token_aad("u1", "refresh"), "upwork-token:u1:refresh"),
        (mfa_secret_aad(USER_ID), f"mfa-secret:{USER_ID}"),
        (mfa_secret_aad("u1"), "mfa-secret:u1"),
        (jwt_key_aad(KID), f"jwt-key:{KID}"),
        (jwt_key_aad("k1"), "jwt-key:k1"),
    ],
)
def test_aad_formats_are_pinned(aad: str, expected: str) -> None:
    assert aad == expected
    assert aad.encode() == expected.encode()  # the bytes AES-GCM authenticates


def test_a_ciphertext_sealed_with_the_old_literal_still_opens() -> None:
    from upwork_assistant.config import new_encryption_key_spec

    ring = KeyRing(new_encryption_key_spec())
    sealed = ring.encrypt("secret", aad=f"upwork-token:{USER_ID}:refresh")
    stored = Sealed(sealed.key_id, bytes(sealed.ciphertext))
    assert ring.decrypt(stored, aad=upwork_token_aad(USER_ID, "refresh")) == "secret"


def test_kinds_do_not_collide() -> None:
    """Each kind, owner and field gets its own AAD: no ciphertext opens in another place."""
    values = [
        upwork_token_aad("u1", "access"),
        upwork_token_aad("u1", "refresh"),
        upwork_token_aad("u2", "access"),
        mfa_secret_aad("u1"),
        mfa_secret_aad("u2"),
        jwt_key_aad("u1"),
    ]
    assert len(set(values)) == len(values)


# ----- key rotation uses the same AAD as the writers --------------------------------------

ROW = SimpleNamespace(user_id=USER_ID, id=USER_ID, kid=KID)

#: Per ciphertext column: the AAD its writer (vault, MFA, JWT key store) seals it with.
WRITERS = {
    "upwork_connections.access_token_ct": upwork_token_aad(USER_ID, "access"),
    "upwork_connections.refresh_token_ct": upwork_token_aad(USER_ID, "refresh"),
    # The pending secret is moved as is into the active columns on confirmation.
    "users.mfa_secret_ct": mfa_secret_aad(USER_ID),
    "users.mfa_pending_ct": mfa_secret_aad(USER_ID),
    "jwt_signing_keys.private_ct": jwt_key_aad(KID),
}


def test_rotation_builds_the_writers_aad_for_every_kind() -> None:
    """``keys rotate`` decrypts and re-encrypts each column with ``col.aad(row)``: it must be
    the writer's AAD. (tests/test_keys_rotation.py rotates one real ciphertext of every kind
    and reads each back with these functions.)"""
    reencrypted = {col.label: col.aad(ROW) for col in rotation.COLUMNS if col.aad is not None}
    assert reencrypted == WRITERS


def test_rotation_knows_every_ciphertext_column() -> None:
    """A new encrypted column must be listed in rotation.COLUMNS (with its AAD function),
    or ``keys rotate`` would leave it on a key that is then removed."""
    stored = {
        f"{table.name}.{column.name}"
        for table in models.Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_ct") and isinstance(column.type, LargeBinary)
    }
    handled = {col.label for col in rotation.COLUMNS}
    assert stored == handled
    assert handled - set(WRITERS) == {"sessions.grace_ct"}  # cleared, not re-encrypted
