"""Optional two-factor sign-in (AUTH-LOGIN-004): TOTP (RFC 6238, pyotp) plus single-use
backup codes (argon2 hashes).

- The TOTP secret is encrypted at rest with the key ring, like the Upwork tokens.
- A code is accepted once: the matched time step must be newer than the last one used.
  Clock skew of one step either way is accepted.
- Race-free on PostgreSQL (READ COMMITTED): every check runs in one transaction that first
  locks the user's row (SELECT ... FOR NO KEY UPDATE; on SQLite the write transaction's BEGIN
  IMMEDIATE serialises instead), so failures are counted and the lockout checked under one
  lock. Spending a code is also a conditional UPDATE (TOTP step newer than the last one,
  backup code still unused) whose row count decides, so a code is accepted at most once
  however many requests race.
- More than ``max_failures`` wrong codes for a user within ``window`` lock MFA for that user
  (a clear message with the time to wait, and an ``mfa.locked`` audit event); a sign-in
  challenge also dies after ``max_failures`` wrong codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from ..db.engine import Database
from ..db.models import MfaBackupCode, MfaChallenge, MfaFailure, User
from ..db.types import utcnow
from ..security import audit
from ..security.audit import RequestMeta
from ..security.keys import DecryptionError, KeyRing, Sealed, constant_time_equal, mac
from .errors import AuthError

log = structlog.get_logger("upwork_assistant.mfa")

#: The issuer an authenticator app shows beside the codes when none is given (the product's
#: name, APP_NAME, is passed in by services.py).
DEFAULT_ISSUER = "Freelance Desk"
BACKUP_CODES = 10
BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
BACKUP_LENGTH = 10
_TOTP_RE = re.compile(r"^\d{6}$")
_BACKUP_RE = re.compile(rf"^[{BACKUP_ALPHABET}]{{{BACKUP_LENGTH}}}$")


@dataclass(frozen=True)
class MfaPolicy:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    challenge_ttl: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class SetupInfo:
    secret: str
    otpauth_uri: str
    qr_svg: str

    def __repr__(self) -> str:
        return "SetupInfo(...)"


class MfaLocked(AuthError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("mfa_locked")
        self.retry_after = retry_after


def normalise_code(code: str) -> tuple[str, str]:
    """("totp", digits) or ("backup", code); AuthError(mfa_code_format) otherwise."""
    cleaned = re.sub(r"[\s-]", "", code or "").lower()
    if _TOTP_RE.fullmatch(cleaned):
        return "totp", cleaned
    if _BACKUP_RE.fullmatch(cleaned):
        return "backup", cleaned
    raise AuthError("mfa_code_format")


def _new_backup_code() -> str:
    return "".join(secrets.choice(BACKUP_ALPHABET) for _ in range(BACKUP_LENGTH))


def format_backup_code(code: str) -> str:
    half = BACKUP_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


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
        self._keyring = keyring
        self._cookie_key = cookie_key
        self.policy = policy
        #: The otpauth URI's issuer: the name authenticator apps list the codes under.
        self.issuer = issuer
        # Backup codes are 50 random bits: a light argon2 suffices and keeps checks fast.
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

    # ----- secrets -----------------------------------------------------------------------

    def _seal(self, user_id: str, secret: str) -> Sealed:
        return self._keyring.encrypt(secret, aad=f"mfa-secret:{user_id}")

    def _open(self, user_id: str, kid: str | None, ct: bytes | None) -> str | None:
        if not kid or ct is None:
            return None
        return self._keyring.decrypt(Sealed(kid, ct), aad=f"mfa-secret:{user_id}")

    # ----- enabling, disabling, backup codes ---------------------------------------------

    async def begin_setup(self, user_id: str, label: str) -> SetupInfo:
        """A new secret, pending until a code from it is confirmed."""
        secret = pyotp.random_base32()
        async with self._db.write() as db:
            user = await self._user(db, user_id)
            if user.mfa_enabled:
                raise AuthError("mfa_already_enabled")
            sealed = self._seal(user_id, secret)
            user.mfa_pending_kid, user.mfa_pending_ct = sealed.key_id, sealed.ciphertext
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=label[:64] or "Upwork user", issuer_name=self.issuer
        )
        qr = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
        return SetupInfo(secret, uri, qr)

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
            secret = self._open(user_id, user.mfa_pending_kid, user.mfa_pending_ct)
            if secret is None:
                raise AuthError("mfa_setup_missing")
            await self._raise_if_locked(db, user_id)
            step = _match_totp(secret, value, None)
            if step is None:
                # Commit the counted failure, then refuse.
                await self._fail(db, user, None, meta)
                return None
            user.mfa_secret_kid, user.mfa_secret_ct = user.mfa_pending_kid, user.mfa_pending_ct
            user.mfa_pending_kid = user.mfa_pending_ct = None
            user.mfa_enabled = True
            user.mfa_enabled_at = utcnow()
            user.mfa_last_step = step
            codes = await self._replace_backup_codes(db, user_id)
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
        await db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user.id))
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
                codes = await self._replace_backup_codes(db, user_id)
                await audit.record(db, audit.MFA_BACKUP_CODES_REGENERATED, meta, user_id=user_id)
        if refused is not None:
            raise refused
        return codes

    async def _replace_backup_codes(self, db: AsyncSession, user_id: str) -> list[str]:
        codes = [_new_backup_code() for _ in range(BACKUP_CODES)]
        hashes = await asyncio.gather(*[asyncio.to_thread(self._hasher.hash, c) for c in codes])
        await db.execute(delete(MfaBackupCode).where(MfaBackupCode.user_id == user_id))
        db.add_all(MfaBackupCode(user_id=user_id, code_hash=h) for h in hashes)
        return [format_backup_code(c) for c in codes]

    async def backup_codes_left(self, user_id: str) -> int:
        async with self._db.session() as db:
            return int(
                await db.scalar(
                    select(func.count())
                    .select_from(MfaBackupCode)
                    .where(MfaBackupCode.user_id == user_id, MfaBackupCode.used_at.is_(None))
                )
                or 0
            )

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
        await self._raise_if_locked(db, user.id)
        if kind == "totp":
            try:
                secret = self._open(user.id, user.mfa_secret_kid, user.mfa_secret_ct) or ""
            except DecryptionError as exc:
                # A key missing from the ring or a damaged row: a clear answer (backup
                # codes still work), logged and audited, never a 500.
                log.error("mfa_secret_unreadable", user_id=user.id, problem=str(exc))
                await audit.record(db, audit.MFA_SECRET_UNREADABLE, meta, user_id=user.id)
                return AuthError("mfa_secret_unreadable")
            if _match_totp(secret, value, None) is not None:
                step = _match_totp(secret, value, user.mfa_last_step)
                if step is not None and await self._spend_step(db, user.id, step):
                    # The UPDATE bypassed the ORM: tell it, so a later change in this
                    # transaction (turning MFA off) compares against the stored value.
                    set_committed_value(user, "mfa_last_step", step)
                    return "totp"
                # A right code used before: refused and logged, not counted as a guess.
                await audit.record(db, audit.MFA_CODE_REUSED, meta, user_id=user.id)
                return AuthError("mfa_code_reused")
        elif await self._use_backup_code(db, user.id, value):
            await audit.record(db, audit.MFA_BACKUP_CODE_USED, meta, user_id=user.id)
            return "backup"
        if await self._fail(db, user, challenge_id, meta):
            return MfaLocked(int(self.policy.window.total_seconds()))
        return AuthError("mfa_invalid_code")

    async def _spend_step(self, db: AsyncSession, user_id: str, step: int) -> bool:
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
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _use_backup_code(self, db: AsyncSession, user_id: str, code: str) -> bool:
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
            return bool(result.rowcount)  # type: ignore[attr-defined]
        return False

    async def _fail(
        self, db: AsyncSession, user: User, challenge_id: str | None, meta: RequestMeta
    ) -> bool:
        """Record a wrong code; True when that locks MFA for the user."""
        db.add(MfaFailure(user_id=user.id))
        if challenge_id is not None:
            await db.execute(
                update(MfaChallenge)
                .where(MfaChallenge.id == challenge_id)
                .values(failures=MfaChallenge.failures + 1)
                .execution_options(synchronize_session=False)
            )
        await db.flush()
        failures = await self._recent_failures(db, user.id)
        await audit.record(db, audit.MFA_FAILED, meta, user_id=user.id, failures=len(failures))
        if len(failures) >= self.policy.max_failures:
            if len(failures) == self.policy.max_failures:
                await audit.record(
                    db,
                    audit.MFA_LOCKED,
                    meta,
                    user_id=user.id,
                    minutes=int(self.policy.window.total_seconds() // 60),
                )
            return True
        return False

    async def _recent_failures(self, db: AsyncSession, user_id: str) -> list[datetime]:
        since = utcnow() - self.policy.window
        rows = await db.execute(
            select(MfaFailure.created_at)
            .where(MfaFailure.user_id == user_id, MfaFailure.created_at > since)
            .order_by(MfaFailure.created_at)
        )
        return list(rows.scalars())

    async def _raise_if_locked(self, db: AsyncSession, user_id: str) -> None:
        failures = await self._recent_failures(db, user_id)
        if len(failures) >= self.policy.max_failures:
            unlock = failures[-self.policy.max_failures] + self.policy.window
            raise MfaLocked(max(1, int((unlock - utcnow()).total_seconds()) + 1))

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

    # ----- sign-in challenges --------------------------------------------------------------

    @staticmethod
    def _challenge_row_id(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def create_challenge(self, db: AsyncSession, user_id: str) -> str:
        """A pending second-factor step for a sign-in (in the caller's transaction).
        Returns the cookie value: a signed opaque id."""
        now = utcnow()
        await db.execute(delete(MfaChallenge).where(MfaChallenge.expires_at < now))
        token = secrets.token_urlsafe(32)
        db.add(
            MfaChallenge(
                id=self._challenge_row_id(token),
                user_id=user_id,
                created_at=now,
                expires_at=now + self.policy.challenge_ttl,
            )
        )
        return f"{token}.{mac(self._cookie_key, f'mfa:{token}')}"

    async def challenge(self, cookie_value: str | None) -> MfaChallenge:
        """The live challenge this browser holds; AuthError otherwise."""
        if not cookie_value:
            raise AuthError("mfa_challenge_missing")
        token, _, signature = cookie_value.partition(".")
        if not token or not constant_time_equal(signature, mac(self._cookie_key, f"mfa:{token}")):
            raise AuthError("mfa_challenge_missing")
        async with self._db.session() as db:
            found = await db.get(MfaChallenge, self._challenge_row_id(token))
        if found is None or found.consumed_at is not None:
            raise AuthError("mfa_challenge_missing")
        if found.expires_at <= utcnow() or found.failures >= self.policy.max_failures:
            raise AuthError("mfa_challenge_expired")
        return found

    async def consume(self, db: AsyncSession, challenge_id: str) -> bool:
        result = await db.execute(
            update(MfaChallenge)
            .where(MfaChallenge.id == challenge_id, MfaChallenge.consumed_at.is_(None))
            .values(consumed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _match_totp(secret: str, code: str, last_step: int | None) -> int | None:
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
