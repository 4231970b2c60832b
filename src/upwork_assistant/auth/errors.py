"""Reason codes of the sign-in flow and the API, each with its HTTP status and the
message a person reads (on the sign-in page as ``/?error=<code>``, or in JSON)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AppError

START_AGAIN = "Please click \u201cSign in with Upwork\u201d to start again."


@dataclass(frozen=True)
class Reason:
    status: int
    message: str


REASONS: dict[str, Reason] = {
    "state_missing": Reason(400, f"The sign-in answer from Upwork was incomplete. {START_AGAIN}"),
    "state_invalid": Reason(400, f"This sign-in attempt could not be verified. {START_AGAIN}"),
    "state_reused": Reason(400, f"This sign-in link has already been used. {START_AGAIN}"),
    "flow_expired": Reason(400, f"The sign-in took too long and expired. {START_AGAIN}"),
    "flow_cookie_missing": Reason(
        400,
        "Sign-in has to finish in the same browser where it started, and this browser "
        f"did not start it. {START_AGAIN}",
    ),
    "access_denied": Reason(
        403,
        "You declined access on Upwork, so you are not signed in. This service needs "
        "that access to create your account.",
    ),
    "upwork_error": Reason(400, f"Upwork reported a problem with the sign-in. {START_AGAIN}"),
    "code_missing": Reason(400, f"Upwork's answer carried no sign-in code. {START_AGAIN}"),
    "code_rejected": Reason(
        400, f"Upwork did not accept the sign-in code (it expired or was used). {START_AGAIN}"
    ),
    "token_exchange_failed": Reason(
        502, "Upwork could not complete the sign-in right now. Please try again in a few minutes."
    ),
    "upwork_unavailable": Reason(
        503, "Upwork did not answer in time. Please try again in a few minutes."
    ),
    "upwork_unauthorized": Reason(
        502, "Upwork refused to share your profile. Please sign in again."
    ),
    "upwork_rate_limited": Reason(
        503, "Upwork is busy and asked us to slow down. Please try again in a minute."
    ),
    "upwork_scope_missing": Reason(
        502,
        "This service's Upwork API key does not have the permission to read your Upwork "
        "identity, so no account could be made. The operator has to add it to the key.",
    ),
    "profile_fetch_failed": Reason(
        502, "We could not read your profile from Upwork. Please try again in a few minutes."
    ),
    "invalid_profile": Reason(
        502,
        "Your Upwork profile has data we cannot accept (for example a missing id or an "
        "over-long name), so no account was created or changed.",
    ),
    "not_authenticated": Reason(401, "Please sign in."),
    "session_expired": Reason(401, "Your session has ended. Please sign in again."),
    "mfa_code_format": Reason(
        400,
        "Enter the 6-digit code from your authenticator app, or one of your backup "
        "codes (10 letters and digits).",
    ),
    "mfa_invalid_code": Reason(
        400, "That code is not right. Check your authenticator app and try again."
    ),
    "mfa_code_reused": Reason(
        400, "That code has already been used. Wait for the next code in your app."
    ),
    "mfa_locked": Reason(
        429, "Too many wrong codes. Two-factor sign-in is locked for 15 minutes; try again later."
    ),
    "mfa_challenge_missing": Reason(
        400, f"There is no sign-in waiting for a code in this browser. {START_AGAIN}"
    ),
    "mfa_challenge_expired": Reason(
        400, f"The sign-in waited too long for its code, or had too many wrong codes. {START_AGAIN}"
    ),
    "mfa_already_enabled": Reason(409, "Two-factor sign-in is already on."),
    "mfa_secret_unreadable": Reason(
        409,
        "Your authenticator's secret cannot be read on this server right now. Use one of "
        "your backup codes instead; the problem is recorded in the security log.",
    ),
    "mfa_not_enabled": Reason(409, "Two-factor sign-in is not on."),
    "mfa_setup_missing": Reason(
        409, "Start setting up two-factor sign-in first (scan a new QR code)."
    ),
    "session_not_found": Reason(404, "No such active session of yours."),
    "forbidden": Reason(403, "You do not have access to this."),
    "mfa_code_required": Reason(400, "Two-factor sign-in is on: enter a current code to confirm."),
    "mfa_reauth_required": Reason(
        403,
        "Confirm it is you first (a code, a backup code or a passkey): changes to your "
        "second factors need a confirmation from the last five minutes.",
    ),
    "totp_already_enabled": Reason(409, "An authenticator app is already set up."),
    "passkey_invalid": Reason(
        400, "The passkey's answer could not be verified. Try again, or use another way."
    ),
    "passkey_unknown": Reason(400, "This passkey is not registered on your account here."),
    "passkey_counter_regressed": Reason(
        400,
        "This passkey's signature counter went backwards, which can mean the key was "
        "copied, so it was refused. Use another way, and check your passkeys on the "
        "Security page.",
    ),
    "passkey_challenge_expired": Reason(400, "The passkey request expired. Please try again."),
    "passkey_challenge_invalid": Reason(
        400, "This passkey request is no longer valid (it was used already). Please try again."
    ),
    "passkey_none": Reason(400, "You have no passkey here. Use your code or a backup code."),
    "passkey_not_found": Reason(404, "No such passkey of yours."),
    "passkey_already_registered": Reason(409, "This passkey is already registered."),
    "passkey_limit": Reason(409, "You have as many passkeys as an account can have (20)."),
    "passkey_name_invalid": Reason(422, "A passkey's name must be 1 to 64 printable characters."),
    "passkeys_unavailable": Reason(
        400,
        "Passkeys need this site's address to be a domain name over https (or localhost in "
        "development).",
    ),
    "account_blocked": Reason(
        403,
        "This account has been blocked by an administrator. Contact support if you "
        "think this is a mistake.",
    ),
    "user_not_found": Reason(404, "No such user."),
    "cannot_block_self": Reason(409, "You cannot block your own account."),
    "csrf_failed": Reason(
        403, "This request lacked a valid CSRF token. Reload the page and try again."
    ),
}

GENERIC = Reason(400, f"Sign-in did not complete. {START_AGAIN}")


def reason(code: str) -> Reason:
    return REASONS.get(code, GENERIC)


class AuthError(AppError):
    """A failed sign-in step or API call, by reason code (REASONS above)."""

    browser_target = "signin"

    def __init__(
        self, code: str, detail: str | None = None, upwork_message: str | None = None
    ) -> None:
        found = reason(code)
        super().__init__(code, found.message, found.status, upwork_message=upwork_message)
        self.detail = detail  # for the audit log only; never shown, never a secret
