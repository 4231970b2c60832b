"""The MFA use cases (enable, disable, new backup codes, verify a code at sign-in or for a
sensitive change), each in one transaction that first locks the user's row (SELECT ... FOR
NO KEY UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises instead), so that a
failure is counted and the lockout checked under one lock, whichever factor is used. The
factors themselves are in totp.py and backup_codes.py; the lockout in lockout.py; the
sign-in challenge in challenges.py."""

from __future__ import annotations

import re

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from ...db.engine import Database
from ...db.models import MfaChallenge, User
from ...db.types import utcnow
from ...security import audit
from ...security.audit import RequestMeta
from ...security.keys import DecryptionError, KeyRing
from ..errors import AuthError
from .backup_codes import BACKUP_ALPHABET, BACKUP_LENGTH, BackupCodes
from .challenges import Challenges
from .lockout import Lockout, MfaLocked, MfaPolicy
from .totp import SetupInfo, TotpFactor, match_totp

log = structlog.get_logger("upwork_assistant.mfa")

#: The issuer an authenticator app shows beside the codes when none is given (the product's
#: name, APP_NAME, is passed in by services.py).
DEFAULT_ISSUER = "Freelance Desk"
_TOTP_RE = re.compile(r"^\d{6}$")
_BACKUP_RE = re.compile(rf"^[{BACKUP_ALPHABET}]{{{BACKUP_LENGTH}}}$")


def normalise_code(code: str) -> tuple[str, str]:
    """("totp", digits) or ("backup", code); AuthError(mfa_code_format) otherwise."""
    cleaned = re.sub(r"[\s-]", "", code or "").lower()
    if _TOTP_RE.fullmatch(cleaned):
        return "totp", cleaned
    if _BACKUP_RE.fullmatch(cleaned):
        return "backup", cleaned
    raise AuthError("mfa_code_format")


class MfaService:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        cookie_key: bytes,
        policy: MfaPolicy,
        issuer: str = DEFAULT_ISSUER,
    ) -> None:
        self._db = db
        self.policy = policy
        self.totp = TotpFactor(keyring, issuer)
        self.backup_codes = BackupCodes()
        self.lockout = Lockout(policy)
        self.challenges = Challenges(db, cookie_key, policy)

    @property
    def issuer(self) -> str:
        return self.totp.issuer

    # ----- enabling, disabling, backup codes ---------------------------------------------

    async def begin_setup(self, user_id: str, label: str) -> SetupInfo:
        """A new secret, pending until a code from it is confirmed."""
        setup = self.totp.new_setup(label)
        async with self._db.write() as db:
            user = await self._user(db, user_id)
            if user.mfa_enabled:
                raise AuthError("mfa_already_enabled")
            sealed = self.totp.seal(user_id, setup.secret)
            user.mfa_pending_kid, user.mfa_pending_ct = sealed.key_id, sealed.ciphertext
        return setup

    async def confirm_setup(self, user_id: str, code: str, meta: RequestMeta) -> list[str]:
        """Activate MFA with a code from the pending secret; returns the backup codes."""
        kind, value = normalise_code(code)
        if kind != "totp":
            raise AuthError("mfa_code_format")
        codes = await self._confirm_setup(user_id, value, meta)
        if codes is None:
            raise AuthError("mfa_invalid_code")
        return codes

    async def _confirm_setup(self, user_id: str, value: str, meta: RequestMeta) -> list[str] | None:
        # One transaction under the user's row lock: two confirmations racing cannot both
        # turn MFA on (the second would replace the backup codes the first one showed).
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            if user.mfa_enabled:
                raise AuthError("mfa_already_enabled")
            secret = self.totp.open(user_id, user.mfa_pending_kid, user.mfa_pending_ct)
            if secret is None:
                raise AuthError("mfa_setup_missing")
            await self.lockout.raise_if_locked(db, user_id)
            step = match_totp(secret, value, None)
            if step is None:
                # Commit the counted failure, then refuse.
                await self.lockout.fail(db, user, None, meta)
                return None
            user.mfa_secret_kid, user.mfa_secret_ct = user.mfa_pending_kid, user.mfa_pending_ct
            user.mfa_pending_kid = user.mfa_pending_ct = None
            user.mfa_enabled = True
            user.mfa_enabled_at = utcnow()
            user.mfa_last_step = step
            codes = await self.backup_codes.replace(db, user_id)
            await audit.record(db, audit.MFA_ENABLED, meta, user_id=user_id)
        return codes

    async def disable(self, user_id: str, code: str, meta: RequestMeta) -> None:
        kind, value = normalise_code(code)
        # Checking the code and turning MFA off in one locked transaction.
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._check(db, user, kind, value, meta, None)
            if isinstance(outcome, AuthError):
                refused = outcome
            else:
                refused = None
                await self._turn_off(db, user, meta)
        if refused is not None:
            raise refused

    async def _turn_off(self, db: AsyncSession, user: User, meta: RequestMeta) -> None:
        user.mfa_enabled = False
        user.mfa_secret_kid = user.mfa_secret_ct = None
        user.mfa_pending_kid = user.mfa_pending_ct = None
        user.mfa_last_step = None
        user.mfa_enabled_at = None
        await self.backup_codes.delete_all(db, user.id)
        await audit.record(db, audit.MFA_DISABLED, meta, user_id=user.id)

    async def regenerate_backup_codes(
        self, user_id: str, code: str, meta: RequestMeta
    ) -> list[str]:
        kind, value = normalise_code(code)
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._check(db, user, kind, value, meta, None)
            if isinstance(outcome, AuthError):
                refused, codes = outcome, []
            else:
                refused = None
                codes = await self.backup_codes.replace(db, user_id)
                await audit.record(db, audit.MFA_BACKUP_CODES_REGENERATED, meta, user_id=user_id)
        if refused is not None:
            raise refused
        return codes

    async def backup_codes_left(self, user_id: str) -> int:
        async with self._db.session() as db:
            return await self.backup_codes.left(db, user_id)

    # ----- checking a code -----------------------------------------------------------------

    async def verify(
        self, user_id: str, code: str, meta: RequestMeta, challenge_id: str | None = None
    ) -> str:
        """Check a TOTP or backup code for a user with MFA on. Returns "totp" or "backup";
        raises AuthError (wrong, reused, malformed code) or MfaLocked."""
        kind, value = normalise_code(code)
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._check(db, user, kind, value, meta, challenge_id)
        # Raised after the commit: a refusal's counted failure and audit events stay.
        if isinstance(outcome, AuthError):
            raise outcome
        return outcome

    async def _check(
        self,
        db: AsyncSession,
        user: User,
        kind: str,
        value: str,
        meta: RequestMeta,
        challenge_id: str | None,
    ) -> str | AuthError:
        """Check a code in the caller's transaction, which holds the user's row lock.
        Returns "totp" or "backup" (the code is spent), or the error to raise once the
        transaction has committed (so that a failure stays counted)."""
        if not user.mfa_enabled:
            raise AuthError("mfa_not_enabled")
        await self.lockout.raise_if_locked(db, user.id)
        if kind == "totp":
            try:
                secret = self.totp.open(user.id, user.mfa_secret_kid, user.mfa_secret_ct) or ""
            except DecryptionError as exc:
                # A key missing from the ring or a damaged row: a clear answer (backup
                # codes still work), logged and audited, never a 500.
                log.error("mfa_secret_unreadable", user_id=user.id, problem=str(exc))
                await audit.record(db, audit.MFA_SECRET_UNREADABLE, meta, user_id=user.id)
                return AuthError("mfa_secret_unreadable")
            if match_totp(secret, value, None) is not None:
                step = match_totp(secret, value, user.mfa_last_step)
                if step is not None and await self.totp.spend_step(db, user.id, step):
                    # The UPDATE bypassed the ORM: tell it, so a later change in this
                    # transaction (turning MFA off) compares against the stored value.
                    set_committed_value(user, "mfa_last_step", step)
                    return "totp"
                # A right code used before: refused and logged, not counted as a guess.
                await audit.record(db, audit.MFA_CODE_REUSED, meta, user_id=user.id)
                return AuthError("mfa_code_reused")
        elif await self.backup_codes.use(db, user.id, value):
            await audit.record(db, audit.MFA_BACKUP_CODE_USED, meta, user_id=user.id)
            return "backup"
        if await self.lockout.fail(db, user, challenge_id, meta):
            return MfaLocked(int(self.policy.window.total_seconds()))
        return AuthError("mfa_invalid_code")

    async def _user(self, db: AsyncSession, user_id: str) -> User:
        user = await db.get(User, user_id)
        if user is None:
            raise AuthError("not_authenticated")
        return user

    async def _locked_user(self, db: AsyncSession, user_id: str) -> User:
        """The user's row, locked until the transaction ends (FOR NO KEY UPDATE on
        PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the database's write lock), read
        as committed now: concurrent MFA checks of one user take turns, so counting failures
        and checking the lockout cannot interleave.

        NO KEY: a plain FOR UPDATE would also block the KEY SHARE lock that inserting any
        row referencing the user takes (an audit record holding the audit chain's lock),
        while this transaction waits for that chain lock to record its own event: a
        deadlock. The key never changes here, so the weaker lock suffices."""
        user = (
            await db.execute(
                select(User)
                .where(User.id == user_id)
                .with_for_update(key_share=True)
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()
        if user is None:
            raise AuthError("not_authenticated")
        return user

    # ----- sign-in challenges (challenges.py) --------------------------------------------

    async def create_challenge(self, db: AsyncSession, user_id: str) -> str:
        return await self.challenges.create(db, user_id)

    async def challenge(self, cookie_value: str | None) -> MfaChallenge:
        return await self.challenges.live(cookie_value)

    async def consume(self, db: AsyncSession, challenge_id: str) -> bool:
        return await self.challenges.consume(db, challenge_id)
