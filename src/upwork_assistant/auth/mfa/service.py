"""The MFA use cases (enable, disable, new backup codes, passkeys, verify a code or a passkey
at sign-in or for a sensitive change), each in one transaction that first locks the user's
row (SELECT ... FOR NO KEY UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises
instead), so that a failure is counted and the lockout checked under one lock, whichever
factor is used. The factors themselves are in totp.py, backup_codes.py and webauthn.py; the
lockout in lockout.py; the sign-in challenge in challenges.py.

MFA is on while the user has a factor: an authenticator app, passkeys, or both. Backup
codes come with the first factor and go with the last. Adding or removing a factor while
MFA is on needs a second factor proven by this session in the last ``fresh_window``
(the sign-in's MFA step counts, or a confirmation on the Security page)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from ...db.engine import Database
from ...db.models import MfaChallenge, User, UserSession, WebAuthnCredential
from ...db.types import utcnow
from ...security import audit
from ...security.audit import RequestMeta
from ...security.keys import DecryptionError, KeyRing
from ..errors import AuthError
from .backup_codes import BACKUP_ALPHABET, BACKUP_LENGTH, BackupCodes
from .challenges import Challenges
from .lockout import Lockout, MfaLocked, MfaPolicy
from .totp import SetupInfo, TotpFactor, match_totp
from .webauthn import PasskeyFactor, Purpose, RelyingParty, clean_name, public_key_fingerprint

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


@dataclass(frozen=True)
class Factors:
    """The second factors a user has (what the MFA step offers, passkey first)."""

    totp: bool
    passkeys: int

    @property
    def any(self) -> bool:
        return self.totp or self.passkeys > 0


class MfaService:
    def __init__(
        self,
        db: Database,
        keyring: KeyRing,
        cookie_key: bytes,
        policy: MfaPolicy,
        issuer: str = DEFAULT_ISSUER,
        rp: RelyingParty | None = None,
    ) -> None:
        self._db = db
        self.policy = policy
        self.totp = TotpFactor(keyring, issuer)
        self.backup_codes = BackupCodes()
        self.lockout = Lockout(policy)
        self.challenges = Challenges(db, cookie_key, policy)
        self.passkeys = PasskeyFactor(
            rp or RelyingParty.from_base_url("http://localhost", issuer, production=False), policy
        )

    @property
    def issuer(self) -> str:
        return self.totp.issuer

    # ----- enabling, disabling, backup codes ---------------------------------------------

    async def begin_setup(self, user_id: str, label: str, session_id: str) -> SetupInfo:
        """A new secret, pending until a code from it is confirmed. With passkeys already on,
        this session must have proven a factor lately."""
        setup = self.totp.new_setup(label)
        async with self._db.write() as db:
            user = await self._user(db, user_id)
            if user.totp_enabled:
                raise AuthError("mfa_already_enabled")
            await self._require_fresh(db, user, session_id)
            sealed = self.totp.seal(user_id, setup.secret)
            user.mfa_pending_kid, user.mfa_pending_ct = sealed.key_id, sealed.ciphertext
        return setup

    async def confirm_setup(
        self, user_id: str, code: str, meta: RequestMeta, session_id: str
    ) -> list[str]:
        """Activate the authenticator app with a code from the pending secret. Returns the
        backup codes when this turned MFA on (an empty list when passkeys already had)."""
        kind, value = normalise_code(code)
        if kind != "totp":
            raise AuthError("mfa_code_format")
        codes = await self._confirm_setup(user_id, value, meta, session_id)
        if codes is None:
            raise AuthError("mfa_invalid_code")
        return codes

    async def _confirm_setup(
        self, user_id: str, value: str, meta: RequestMeta, session_id: str
    ) -> list[str] | None:
        # One transaction under the user's row lock: two confirmations racing cannot both
        # turn MFA on (the second would replace the backup codes the first one showed).
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            if user.totp_enabled:
                raise AuthError("mfa_already_enabled")
            await self._require_fresh(db, user, session_id)
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
            user.mfa_last_step = step
            codes = await self._factor_added(db, user, session_id, meta, "totp")
        return codes

    async def _factor_added(
        self, db: AsyncSession, user: User, session_id: str, meta: RequestMeta, factor: str
    ) -> list[str]:
        """MFA on with its first factor: backup codes (returned, shown once) and the audit
        record. The session that added the factor has just proven it: fresh."""
        codes: list[str] = []
        if not user.mfa_enabled:
            user.mfa_enabled = True
            user.mfa_enabled_at = utcnow()
            codes = await self.backup_codes.replace(db, user.id)
            await audit.record(db, audit.MFA_ENABLED, meta, user_id=user.id, factor=factor)
        elif factor == "totp":
            # (A passkey's own event, mfa.passkey_added, is written by add_passkey.)
            await audit.record(db, audit.MFA_TOTP_ADDED, meta, user_id=user.id)
        await self.mark_fresh(db, session_id)
        return codes

    async def disable(
        self, user_id: str, code: str, meta: RequestMeta, session_id: str | None = None
    ) -> None:
        """Turn MFA off: a TOTP or backup code, or (``code`` empty) a factor this session
        confirmed in the last ``fresh_window`` (how a passkeys-only user does it)."""
        # Checking the code and turning MFA off in one locked transaction.
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._confirmed(db, user, code, meta, session_id)
            if isinstance(outcome, AuthError):
                refused = outcome
            else:
                refused = None
                await self._turn_off(db, user, meta)
        if refused is not None:
            raise refused

    async def _confirmed(
        self,
        db: AsyncSession,
        user: User,
        code: str,
        meta: RequestMeta,
        session_id: str | None,
    ) -> str | AuthError:
        """A sensitive change's proof: a code checked now, or with no code a fresh session."""
        if code.strip() or session_id is None:
            kind, value = normalise_code(code)
            return await self._check(db, user, kind, value, meta, None)
        if not user.mfa_enabled:
            raise AuthError("mfa_not_enabled")
        await self._require_fresh(db, user, session_id)
        return "fresh"

    async def _turn_off(self, db: AsyncSession, user: User, meta: RequestMeta) -> None:
        """Every factor goes: the app's secret, the passkeys, the backup codes."""
        user.mfa_enabled = False
        _forget_totp(user)
        user.mfa_enabled_at = None
        await self.backup_codes.delete_all(db, user.id)
        await db.execute(delete(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id))
        await audit.record(db, audit.MFA_DISABLED, meta, user_id=user.id)

    async def remove_totp(self, user_id: str, session_id: str, meta: RequestMeta) -> bool:
        """Remove the authenticator app (a fresh factor needed). Passkeys left keep MFA on;
        otherwise MFA goes off. Returns whether MFA is still on."""
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            if not user.totp_enabled:
                raise AuthError("mfa_not_enabled")
            await self._require_fresh(db, user, session_id)
            if await self._passkey_count(db, user.id):
                _forget_totp(user)
                await audit.record(db, audit.MFA_TOTP_REMOVED, meta, user_id=user.id)
            else:
                await self._turn_off(db, user, meta)
            return user.mfa_enabled

    async def regenerate_backup_codes(
        self, user_id: str, code: str, meta: RequestMeta, session_id: str | None = None
    ) -> list[str]:
        """New backup codes: proven as :meth:`disable` is."""
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._confirmed(db, user, code, meta, session_id)
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
        if kind == "totp" and user.totp_enabled:
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
        elif kind == "backup" and await self.backup_codes.use(db, user.id, value):
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

    # ----- which factors, and a fresh one ------------------------------------------------

    async def factors(self, user_id: str) -> Factors:
        async with self._db.session() as db:
            user = await self._user(db, user_id)
            return Factors(totp=user.totp_enabled, passkeys=await self._passkey_count(db, user_id))

    @staticmethod
    async def _passkey_count(db: AsyncSession, user_id: str) -> int:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(WebAuthnCredential)
                .where(WebAuthnCredential.user_id == user_id)
            )
            or 0
        )

    async def fresh_until(self, session_id: str) -> datetime | None:
        """Until when this session may change the factors without confirming again."""
        async with self._db.session() as db:
            verified = await db.scalar(
                select(UserSession.mfa_verified_at).where(UserSession.id == session_id)
            )
        if verified is None or verified + self.policy.fresh_window <= utcnow():
            return None
        return verified + self.policy.fresh_window

    async def _require_fresh(self, db: AsyncSession, user: User, session_id: str) -> None:
        """With MFA on, a change of factors needs this session to have proven one lately."""
        if not user.mfa_enabled:
            return
        verified = await db.scalar(
            select(UserSession.mfa_verified_at).where(
                UserSession.id == session_id, UserSession.user_id == user.id
            )
        )
        if verified is None or verified + self.policy.fresh_window <= utcnow():
            raise AuthError("mfa_reauth_required")

    @staticmethod
    async def mark_fresh(db: AsyncSession, session_id: str) -> None:
        """This session has just proven a factor (in the caller's transaction)."""
        await db.execute(
            update(UserSession)
            .where(UserSession.id == session_id)
            .values(mfa_verified_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def reauth_with_code(
        self, user_id: str, session_id: str, code: str, meta: RequestMeta
    ) -> datetime:
        """Confirm a second factor (a TOTP or backup code) for changes to the factors."""
        kind, value = normalise_code(code)
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._check(db, user, kind, value, meta, None)
            if not isinstance(outcome, AuthError):
                await self.mark_fresh(db, session_id)
                await audit.record(
                    db, audit.MFA_REAUTHENTICATED, meta, user_id=user_id, factor=outcome
                )
        if isinstance(outcome, AuthError):
            raise outcome
        return utcnow() + self.policy.fresh_window

    # ----- passkeys ------------------------------------------------------------------------

    async def passkey_list(self, user_id: str) -> list[WebAuthnCredential]:
        async with self._db.session() as db:
            return await self.passkeys.of_user(db, user_id)

    async def passkey_registration_options(
        self, user_id: str, session_id: str, user_name: str
    ) -> dict[str, Any]:
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            await self._require_fresh(db, user, session_id)
            return await self.passkeys.registration_options(
                db, user_id, user_name[:64] or "Upwork user", session_id
            )

    async def add_passkey(
        self,
        user_id: str,
        session_id: str,
        name: str,
        credential: dict[str, Any],
        meta: RequestMeta,
    ) -> tuple[WebAuthnCredential, list[str]]:
        """Register the passkey the browser created for the options of this session. Returns
        it and, when it turned MFA on, the backup codes (shown once)."""
        name = clean_name(name)
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            await self._require_fresh(db, user, session_id)
            challenge = await self.passkeys.spend_challenge(
                db, credential, user_id, "register", session_id=session_id
            )
            try:
                new = self.passkeys.verify_registration(credential, challenge)
            except AuthError as exc:
                refused: AuthError | None = exc  # raised after the commit: the challenge is spent
            else:
                refused = None
                row = WebAuthnCredential(
                    user_id=user_id,
                    credential_id=new.credential_id,
                    public_key=new.public_key,
                    sign_count=new.sign_count,
                    name=name,
                    transports=new.transports,
                    aaguid=new.aaguid,
                    backed_up=new.backed_up,
                )
                try:
                    async with db.begin_nested():
                        db.add(row)
                except IntegrityError:
                    refused = AuthError("passkey_already_registered")
                else:
                    codes = await self._factor_added(db, user, session_id, meta, "passkey")
                    await audit.record(
                        db,
                        audit.MFA_PASSKEY_ADDED,
                        meta,
                        user_id=user_id,
                        passkey_id=row.id,
                        aaguid=new.aaguid,
                        public_key_sha256=public_key_fingerprint(new.public_key),
                        backed_up=new.backed_up,
                    )
        if refused is not None:
            raise refused
        return row, codes

    async def rename_passkey(
        self, user_id: str, passkey_id: str, name: str, meta: RequestMeta
    ) -> WebAuthnCredential:
        name = clean_name(name)
        async with self._db.write() as db:
            row = await self._own_passkey(db, user_id, passkey_id)
            row.name = name
            await audit.record(
                db, audit.MFA_PASSKEY_RENAMED, meta, user_id=user_id, passkey_id=row.id
            )
            return row

    async def remove_passkey(
        self, user_id: str, session_id: str, passkey_id: str, meta: RequestMeta
    ) -> bool:
        """Remove one of your passkeys (a fresh factor needed). The last factor going turns
        MFA off. Returns whether MFA is still on."""
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            row = await self._own_passkey(db, user_id, passkey_id)
            await self._require_fresh(db, user, session_id)
            await db.delete(row)
            await db.flush()
            await audit.record(
                db,
                audit.MFA_PASSKEY_REMOVED,
                meta,
                user_id=user_id,
                passkey_id=passkey_id,
                public_key_sha256=public_key_fingerprint(row.public_key),
            )
            if not user.totp_enabled and not await self._passkey_count(db, user_id):
                await self._turn_off(db, user, meta)
            return user.mfa_enabled

    @staticmethod
    async def _own_passkey(db: AsyncSession, user_id: str, passkey_id: str) -> WebAuthnCredential:
        row = await db.get(WebAuthnCredential, passkey_id)
        if row is None or row.user_id != user_id:
            raise AuthError("passkey_not_found")
        return row

    async def passkey_assertion_options(
        self,
        user_id: str,
        purpose: Purpose,
        *,
        mfa_challenge_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Options for ``navigator.credentials.get``: the sign-in's MFA step
        (``mfa_challenge_id``) or a confirmation by a signed-in session (``session_id``)."""
        async with self._db.write() as db:
            user = await self._user(db, user_id)
            if not user.mfa_enabled:
                raise AuthError("mfa_not_enabled")
            return await self.passkeys.assertion_options(
                db, user_id, purpose, mfa_challenge_id=mfa_challenge_id, session_id=session_id
            )

    async def verify_passkey(
        self,
        user_id: str,
        credential: dict[str, Any],
        meta: RequestMeta,
        *,
        challenge_id: str | None = None,
        session_id: str | None = None,
    ) -> str:
        """Check a passkey assertion for the sign-in's MFA step (``challenge_id``) or for a
        confirmation (``session_id``, which then counts as fresh). Returns "passkey";
        raises AuthError or MfaLocked. A failure counts toward the same lockout as a wrong
        code, and is audited; a counter that went backwards is audited as a possible copy."""
        purpose: Purpose = "signin" if challenge_id is not None else "reauth"
        async with self._db.write() as db:
            user = await self._locked_user(db, user_id)
            outcome = await self._check_passkey(
                db, user, credential, meta, purpose, challenge_id, session_id
            )
            if not isinstance(outcome, AuthError) and session_id is not None:
                await self.mark_fresh(db, session_id)
                await audit.record(
                    db, audit.MFA_REAUTHENTICATED, meta, user_id=user_id, factor="passkey"
                )
        if isinstance(outcome, AuthError):
            raise outcome
        return outcome

    async def _check_passkey(
        self,
        db: AsyncSession,
        user: User,
        credential: dict[str, Any],
        meta: RequestMeta,
        purpose: Purpose,
        challenge_id: str | None,
        session_id: str | None,
    ) -> str | AuthError:
        if not user.mfa_enabled:
            raise AuthError("mfa_not_enabled")
        await self.lockout.raise_if_locked(db, user.id)
        stored: WebAuthnCredential | None = None
        try:
            challenge = await self.passkeys.spend_challenge(
                db,
                credential,
                user.id,
                purpose,
                mfa_challenge_id=challenge_id,
                session_id=session_id,
            )
            stored = await self.passkeys.find(db, user.id, credential)
            new_count = self.passkeys.verify_assertion(credential, challenge, stored)
        except AuthError as exc:
            # The failure first (it updates the sign-in's challenge row, then the audit
            # chain), then this refusal's own record: the order in which a sign-in that
            # succeeds takes the same two locks (consume the challenge, then audit), so two
            # answers racing for one sign-in cannot deadlock on PostgreSQL.
            locked = await self.lockout.fail(db, user, challenge_id, meta)
            if exc.code == "passkey_counter_regressed" and stored is not None:
                log.warning("passkey_counter_regressed", user_id=user.id, passkey_id=stored.id)
                await audit.record(
                    db,
                    audit.MFA_PASSKEY_COUNTER_REGRESSED,
                    meta,
                    user_id=user.id,
                    passkey_id=stored.id,
                    stored_count=stored.sign_count,
                )
            else:
                await audit.record(
                    db, audit.MFA_PASSKEY_REFUSED, meta, user_id=user.id, reason_code=exc.code
                )
            if locked:
                return MfaLocked(int(self.policy.window.total_seconds()))
            return exc
        # Compare-and-set: of two assertions racing with one key, one moves the counter.
        result = await db.execute(
            update(WebAuthnCredential)
            .where(
                WebAuthnCredential.id == stored.id,
                WebAuthnCredential.sign_count == stored.sign_count,
            )
            .values(sign_count=new_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return AuthError("passkey_challenge_invalid")
        await audit.record(db, audit.MFA_PASSKEY_USED, meta, user_id=user.id, passkey_id=stored.id)
        return "passkey"


def _forget_totp(user: User) -> None:
    user.mfa_secret_kid = user.mfa_secret_ct = None
    user.mfa_pending_kid = user.mfa_pending_ct = None
    user.mfa_last_step = None
