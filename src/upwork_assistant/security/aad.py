"""The associated data (AAD) of every ciphertext kind stored with the key ring.

Each ciphertext is AES-GCM with associated data naming its owner and kind (see
``KeyRing.encrypt``): a ciphertext copied into another row or column does not decrypt.
The writer, the reader and key rotation (``security/rotation.py``) must build the very same
bytes, so each format lives here, once, and everyone calls these functions.

**Never change a format**: ciphertexts already stored were sealed with it, and would no
longer decrypt (``tests/test_aad.py`` pins every one). A new kind gets a new function here,
and a ``CipherColumn`` in ``security/rotation.py``.
"""

from __future__ import annotations

from typing import Literal

UpworkTokenField = Literal["access", "refresh"]


def upwork_token_aad(user_id: str, field: UpworkTokenField) -> str:
    """A user's Upwork OAuth token (``upwork_connections.access_token_ct`` or
    ``refresh_token_ct``): binds it to the user and to the field, so one user's token
    cannot be swapped into another user's row, nor an access token into the refresh
    column (or back)."""
    return f"upwork-token:{user_id}:{field}"


def mfa_secret_aad(user_id: str) -> str:
    """A user's TOTP secret, both the active one (``users.mfa_secret_ct``) and the one
    pending confirmation (``users.mfa_pending_ct``): binds it to the user, so a secret copied
    to another account does not decrypt. Both columns share one AAD on purpose: confirming
    the setup moves the pending ciphertext, unchanged, into the active columns."""
    return f"mfa-secret:{user_id}"


def jwt_key_aad(kid: str) -> str:
    """The private part of one of our JWT signing keys (``jwt_signing_keys.private_ct``):
    binds it to the key id (``kid``) it is published under, so a row cannot be made to
    sign under another key's id."""
    return f"jwt-key:{kid}"
