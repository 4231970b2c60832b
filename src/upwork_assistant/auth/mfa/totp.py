"""The TOTP factor (RFC 6238, pyotp): its secret, sealed at rest with the key ring like the
Upwork tokens, the provisioning URI and QR code for an authenticator app, and the check of
a code. A code is accepted once: the matched time step must be newer than the last one
used, and spending it is a conditional UPDATE. One step of clock skew either way is
accepted."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...db.models import User
from ...security.aad import mfa_secret_aad
from ...security.keys import KeyRing, Sealed


@dataclass(frozen=True)
class SetupInfo:
    secret: str
    otpauth_uri: str
    qr_svg: str

    def __repr__(self) -> str:
        return "SetupInfo(...)"


class TotpFactor:
    def __init__(self, keyring: KeyRing, issuer: str) -> None:
        self._keyring = keyring
        #: The otpauth URI's issuer: the name authenticator apps list the codes under.
        self.issuer = issuer

    def seal(self, user_id: str, secret: str) -> Sealed:
        return self._keyring.encrypt(secret, aad=mfa_secret_aad(user_id))

    def open(self, user_id: str, kid: str | None, ct: bytes | None) -> str | None:
        """The secret, None when there is none; DecryptionError when unreadable."""
        if not kid or ct is None:
            return None
        return self._keyring.decrypt(Sealed(kid, ct), aad=mfa_secret_aad(user_id))

    def new_setup(self, label: str) -> SetupInfo:
        """A fresh secret with its otpauth:// URI and QR code (SVG)."""
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=label[:64] or "Upwork user", issuer_name=self.issuer
        )
        qr = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
        return SetupInfo(secret, uri, qr)

    @staticmethod
    async def spend_step(db: AsyncSession, user_id: str, step: int) -> bool:
        """Record ``step`` as used unless it (or a later one) already is. The condition is
        in the UPDATE itself, so even without the row lock only one request wins a step."""
        result = await db.execute(
            update(User)
            .where(
                User.id == user_id,
                or_(User.mfa_last_step.is_(None), User.mfa_last_step < step),
            )
            .values(mfa_last_step=step)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))


def match_totp(secret: str, code: str, last_step: int | None) -> int | None:
    """The time step (now, or one either side) whose code is ``code`` and that is newer
    than ``last_step``; None when there is none."""
    if not secret:
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(time.time() // totp.interval)
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and (
            last_step is None or step > last_step
        ):
            return step
    return None
