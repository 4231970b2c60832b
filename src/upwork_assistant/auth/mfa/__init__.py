"""Optional two-factor sign-in (AUTH-LOGIN-004), after "Sign in with Upwork": a module per
factor (totp.py: an authenticator app's codes; webauthn.py: passkeys and security keys;
backup_codes.py: single-use codes), the
lockout they share (lockout.py), the pending second step of a sign-in (challenges.py),
and the use cases that tie them together under the user's row lock (service.py)."""

from .backup_codes import BACKUP_CODES, format_backup_code
from .lockout import MfaLocked, MfaPolicy
from .service import DEFAULT_ISSUER, Factors, MfaService, normalise_code
from .totp import SetupInfo
from .webauthn import NAME_MAX, RelyingParty

__all__ = [
    "BACKUP_CODES",
    "DEFAULT_ISSUER",
    "NAME_MAX",
    "Factors",
    "MfaLocked",
    "MfaPolicy",
    "MfaService",
    "RelyingParty",
    "SetupInfo",
    "format_backup_code",
    "normalise_code",
]
