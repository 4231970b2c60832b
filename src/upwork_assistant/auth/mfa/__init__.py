"""Optional two-factor sign-in (AUTH-LOGIN-004), after "Sign in with Upwork": a module per
factor (totp.py: an authenticator app's codes; backup_codes.py: single-use codes), the
lockout they share (lockout.py), the pending second step of a sign-in (challenges.py),
and the use cases that tie them together under the user's row lock (service.py)."""

from .backup_codes import BACKUP_CODES, format_backup_code
from .lockout import MfaLocked, MfaPolicy
from .service import DEFAULT_ISSUER, MfaService, normalise_code
from .totp import SetupInfo

__all__ = [
    "BACKUP_CODES",
    "DEFAULT_ISSUER",
    "MfaLocked",
    "MfaPolicy",
    "MfaService",
    "SetupInfo",
    "format_backup_code",
    "normalise_code",
]
