from __future__ import annotations

import base64

import pytest

from upwork_assistant.config import ConfigError, new_encryption_key_spec
from upwork_assistant.security.keys import DecryptionError, DerivedKeys, KeyRing, Sealed


def test_round_trip_and_fresh_nonce() -> None:
    ring = KeyRing(new_encryption_key_spec())
    a = ring.encrypt("token-value", aad="u1:access")
    b = ring.encrypt("token-value", aad="u1:access")
    assert a.ciphertext != b.ciphertext and b"token-value" not in a.ciphertext
    assert ring.decrypt(a, aad="u1:access") == "token-value"


def test_rotation_old_key_still_decrypts() -> None:
    old = new_encryption_key_spec()
    sealed = KeyRing(old).encrypt("secret", aad="x")
    new = new_encryption_key_spec()
    rotated = KeyRing(f"{new},{old}")
    assert rotated.primary_id == new.split(":")[0]
    assert rotated.decrypt(sealed, aad="x") == "secret"
    assert rotated.encrypt("secret", aad="x").key_id == rotated.primary_id


def test_unknown_key_tamper_and_wrong_aad() -> None:
    ring = KeyRing(new_encryption_key_spec())
    sealed = ring.encrypt("secret", aad="user-1")
    with pytest.raises(DecryptionError):
        ring.decrypt(sealed, aad="user-2")
    flipped = bytearray(sealed.ciphertext)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionError):
        ring.decrypt(Sealed(sealed.key_id, bytes(flipped)), aad="user-1")
    with pytest.raises(DecryptionError, match="no key"):
        KeyRing(new_encryption_key_spec()).decrypt(sealed, aad="user-1")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "nokid",
        ":" + base64.urlsafe_b64encode(b"k" * 32).decode(),
        "a:" + base64.urlsafe_b64encode(b"short").decode(),
        "a:!!!not-base64!!!",
        "a:{k},a:{k}".format(k=base64.urlsafe_b64encode(b"k" * 32).decode()),
    ],
)
def test_bad_key_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        KeyRing(spec)


def test_derived_keys_are_independent_and_stable() -> None:
    a, b = DerivedKeys("x" * 40), DerivedKeys("x" * 40)
    assert a.csrf == b.csrf and a.csrf != a.flow_cookie != a.token_hash
    assert DerivedKeys("y" * 40).csrf != a.csrf
