"""Passkeys (WebAuthn) as a second factor, in-process, answered by a software
authenticator (tests/soft_authenticator.py): registration, the sign-in's MFA step, the
fresh-factor rule for changes, and every refusal (wrong origin or RP id, replayed or
expired challenge, unknown or another user's credential, a counter that goes back)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from upwork_assistant.auth.errors import AuthError
from upwork_assistant.auth.mfa.lockout import MfaPolicy
from upwork_assistant.auth.mfa.webauthn import (
    PasskeyFactor,
    RelyingParty,
    public_key_fingerprint,
)
from upwork_assistant.db.models import WebAuthnCredential

from .fixtures import SANDBOX_USERS, InProcessApp
from .helpers import AsyncBrowser, rows
from .soft_authenticator import SoftAuthenticator, b64url, unb64url
from .test_mfa import (
    code_at,
    enable_mfa_inprocess,
    sign_out_inprocess,
    start_mfa_sign_in_inprocess,
    submit_inprocess,
)
from .upwork_helpers import JSON, audit_events, csrf_headers, sign_in_inprocess, sqlite_time

pytestmark = pytest.mark.inprocess

API = "/api/security/mfa/webauthn"
EVIL_ORIGIN = "https://evil.example"
EVIL_RP = "evil.example"


#: One registration and one assertion made once by the soft authenticator for
#: https://desk.example (RP id desk.example) with fixed challenges: the library-level
#: checks must keep accepting exactly these bytes, and refuse any one byte changed.
RECORDED_RP = RelyingParty("desk.example", "Desk", "https://desk.example")
RECORDED_REGISTRATION_CHALLENGE = b"recorded-vector-registration-01!"
RECORDED_ASSERTION_CHALLENGE = b"recorded-vector-assertion-0001!!"
RECORDED_PUBLIC_KEY_SHA256 = "c8e294539634117eea8de0490f023d98e1a696f307f5e84293f2aeb2a923561a"
RECORDED_REGISTRATION: dict[str, Any] = {
    "id": "Aft4jv4fid2n-7S5JGcz6H5t5VLY7m4CDLedwkJCk9w",
    "rawId": "Aft4jv4fid2n-7S5JGcz6H5t5VLY7m4CDLedwkJCk9w",
    "type": "public-key",
    "response": {
        "clientDataJSON": (
            "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIiwiY2hhbGxlbmdlIjoiY21WamIzSmtaV1F0ZG"
            "1WamRHOXlMWEpsWjJsemRISmhkR2x2Ymkwd01TRSIsIm9yaWdpbiI6Imh0dHBzOi8vZGVz"
            "ay5leGFtcGxlIiwiY3Jvc3NPcmlnaW4iOmZhbHNlfQ"
        ),
        "attestationObject": (
            "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVikXkUwuGZsUU-YkAZdBEvuDTuIVcZHez"
            "yUEp5h7xrsX5xFAAAAAAAAAAAAAAAAAAAAAAAAAAAAIAH7eI7-H4ndp_u0uSRnM-h-beVS"
            "2O5uAgy3ncJCQpPcpQECAyYgASFYIOzI7Y2E8f0FA5OYqvvGgiZO4zXTyXyhe8PMzs-dVK"
            "Z9IlggXZ14L-QjOrDUx1JZ8CPS-FiWxMSKsWmkt4CLnrQUpEI"
        ),
        "transports": ["usb"],
    },
    "clientExtensionResults": {},
    "authenticatorAttachment": "cross-platform",
}
RECORDED_ASSERTION: dict[str, Any] = {
    "id": "Aft4jv4fid2n-7S5JGcz6H5t5VLY7m4CDLedwkJCk9w",
    "rawId": "Aft4jv4fid2n-7S5JGcz6H5t5VLY7m4CDLedwkJCk9w",
    "type": "public-key",
    "response": {
        "clientDataJSON": (
            "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiY21WamIzSmtaV1F0ZG1Wam"
            "RHOXlMV0Z6YzJWeWRHbHZiaTB3TURBeElTRSIsIm9yaWdpbiI6Imh0dHBzOi8vZGVzay5l"
            "eGFtcGxlIiwiY3Jvc3NPcmlnaW4iOmZhbHNlfQ"
        ),
        "authenticatorData": "XkUwuGZsUU-YkAZdBEvuDTuIVcZHezyUEp5h7xrsX5wFAAAAAQ",
        "signature": (
            "MEYCIQCARKJCEJ-S_DYvIsr9r8pw2VB9KnPI8fgy_w9H5-nGSwIhAKdXAOhmxzjBCqCcw7"
            "LYRLwAFFFC0Rv-R5ISjqld-3-m"
        ),
        "userHandle": "dXNlci0wMDAx",
    },
    "clientExtensionResults": {},
    "authenticatorAttachment": "cross-platform",
}


def error_of(r: httpx.Response) -> str:
    return str(r.json().get("error"))


def authenticator_for(app: InProcessApp, **kwargs: Any) -> SoftAuthenticator:
    return SoftAuthenticator(origin=app.app.state.services.mfa.passkeys.rp.origin, **kwargs)


async def register_options(browser: AsyncBrowser) -> dict[str, Any]:
    r = await browser.post(f"{API}/register/options", headers=csrf_headers(browser))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def register_verify(
    browser: AsyncBrowser, credential: Any, name: str = "YubiKey"
) -> httpx.Response:
    return await browser.post(
        f"{API}/register/verify",
        headers=csrf_headers(browser),
        json={"name": name, "credential": credential},
    )


async def add_passkey(
    browser: AsyncBrowser, key: SoftAuthenticator, name: str = "YubiKey"
) -> dict[str, Any]:
    credential = key.create(await register_options(browser))
    r = await register_verify(browser, credential, name)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def passkey_user(
    app: InProcessApp, who: str = "alex", **key_kwargs: Any
) -> tuple[AsyncBrowser, str, SoftAuthenticator, dict[str, Any]]:
    """A signed-in user whose first factor is a passkey (registered just now)."""
    browser, user_id = await sign_in_inprocess(app, SANDBOX_USERS[who])
    key = authenticator_for(app, **key_kwargs)
    added = await add_passkey(browser, key)
    return browser, user_id, key, added


async def mfa_step(app: InProcessApp, who: str = "alex") -> AsyncBrowser:
    """A new browser at the MFA step of ``who``'s sign-in."""
    browser = app.browser()
    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS[who])
    return browser


async def signin_options(browser: AsyncBrowser) -> dict[str, Any]:
    r = await browser.post(f"{API}/authenticate/options", headers=JSON)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def signin_verify(browser: AsyncBrowser, credential: Any) -> httpx.Response:
    return await browser.post(
        f"{API}/authenticate/verify", headers=JSON, json={"credential": credential}
    )


async def passkey_sign_in(
    browser: AsyncBrowser, key: SoftAuthenticator, **get_kwargs: Any
) -> httpx.Response:
    return await signin_verify(browser, key.get(await signin_options(browser), **get_kwargs))


async def reauth_options(browser: AsyncBrowser) -> dict[str, Any]:
    r = await browser.post(f"{API}/reauth/options", headers=csrf_headers(browser))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def reauth_verify(browser: AsyncBrowser, credential: Any) -> httpx.Response:
    return await browser.post(
        f"{API}/reauth/verify", headers=csrf_headers(browser), json={"credential": credential}
    )


async def reauth_passkey(
    browser: AsyncBrowser, key: SoftAuthenticator, **get_kwargs: Any
) -> httpx.Response:
    return await reauth_verify(browser, key.get(await reauth_options(browser), **get_kwargs))


async def reauth_code(browser: AsyncBrowser, code: str) -> httpx.Response:
    return await browser.post(
        "/api/security/mfa/reauth", headers=csrf_headers(browser), json={"code": code}
    )


async def mfa_status(browser: AsyncBrowser) -> dict[str, Any]:
    r = await browser.get("/api/security/mfa", headers=JSON)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def remove_passkey(browser: AsyncBrowser, passkey_id: str) -> httpx.Response:
    return await browser.client.delete(
        f"{API}/credentials/{passkey_id}", headers=csrf_headers(browser)
    )


async def rename_passkey(browser: AsyncBrowser, passkey_id: str, name: Any) -> httpx.Response:
    return await browser.client.patch(
        f"{API}/credentials/{passkey_id}", headers=csrf_headers(browser), json={"name": name}
    )


def totp_now(app: InProcessApp, user_id: str, secret: str) -> str:
    """A current TOTP code the server will take: it forgets the last step used, so that a
    test may prove the app factor more than once within 30 seconds."""
    rows(app.db_path, "UPDATE users SET mfa_last_step=NULL WHERE id=?", user_id)
    return code_at(secret)


def wrong_code(secret: str) -> str:
    good = {code_at(secret, d) for d in (-1, 0, 1, 2)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in good)


def make_stale(app: InProcessApp, user_id: str) -> None:
    """Every session of the user proved a second factor just over the fresh window ago."""
    past = datetime.now(UTC) - MfaPolicy().fresh_window - timedelta(seconds=1)
    rows(
        app.db_path,
        "UPDATE sessions SET mfa_verified_at=? WHERE user_id=?",
        sqlite_time(past),
        user_id,
    )


def expire_passkey_challenges(app: InProcessApp) -> None:
    rows(app.db_path, "UPDATE webauthn_challenges SET expires_at='2000-01-01 00:00:00.000000'")


def events(app: InProcessApp, event_type: str, user_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(r[0])
        for r in rows(
            app.db_path,
            "SELECT details FROM audit_events WHERE event_type=? AND user_id=? ORDER BY id",
            event_type,
            user_id,
        )
    ]


def stored_passkeys(app: InProcessApp, user_id: str) -> list[tuple[Any, ...]]:
    """(id, credential_id, sign_count, public_key, name) of the user's passkeys."""
    return rows(
        app.db_path,
        "SELECT id, credential_id, sign_count, public_key, name FROM webauthn_credentials "
        "WHERE user_id=? ORDER BY created_at, id",
        user_id,
    )


def count_where(app: InProcessApp, table: str, user_id: str) -> int:
    sql = f"SELECT count(*) FROM {table} WHERE user_id=?"  # noqa: S608 - a table name of ours
    return int(rows(app.db_path, sql, user_id)[0][0])


# ----- the recorded vector: the library-level checks, no database -----------------------


def recorded_factor() -> PasskeyFactor:
    return PasskeyFactor(RECORDED_RP, MfaPolicy())


def recorded_stored(sign_count: int = 0) -> WebAuthnCredential:
    new = recorded_factor().verify_registration(
        RECORDED_REGISTRATION, RECORDED_REGISTRATION_CHALLENGE
    )
    return WebAuthnCredential(
        credential_id=new.credential_id, public_key=new.public_key, sign_count=sign_count
    )


def tampered(credential: dict[str, Any], field: str, change: Any) -> dict[str, Any]:
    """A deep copy of ``credential`` with one byte of ``response[field]`` changed by
    ``change(bytearray)``."""
    out = copy.deepcopy(credential)
    raw = bytearray(unb64url(out["response"][field]))
    change(raw)
    out["response"][field] = b64url(bytes(raw))
    return out


def flip_at(index: int) -> Any:
    def change(raw: bytearray) -> None:
        raw[index] ^= 0x01

    return change


def flip_origin(raw: bytearray) -> None:
    """https://desk.example -> https://desk.exbmple: one byte of the origin."""
    at = raw.index(b'"origin":"https://desk.example"') + len(b'"origin":"https://desk.ex')
    assert raw[at : at + 1] == b"a"
    raw[at] = ord("b")


def flip_rp_id_hash(raw: bytearray) -> None:
    """One byte of the rpIdHash inside the attestation object's authData."""
    at = raw.index(hashlib.sha256(b"desk.example").digest())
    raw[at] ^= 0x01


def test_recorded_vector_is_accepted() -> None:
    assert RelyingParty.from_base_url("https://desk.example", "Desk", production=True) == (
        RECORDED_RP
    )
    factor = recorded_factor()
    new = factor.verify_registration(RECORDED_REGISTRATION, RECORDED_REGISTRATION_CHALLENGE)
    assert new.credential_id == RECORDED_REGISTRATION["id"]
    assert new.sign_count == 0 and new.transports == ["usb"] and new.backed_up is False
    assert new.aaguid == "00000000-0000-0000-0000-000000000000"
    assert public_key_fingerprint(new.public_key) == RECORDED_PUBLIC_KEY_SHA256
    stored = recorded_stored()
    assert factor.verify_assertion(RECORDED_ASSERTION, RECORDED_ASSERTION_CHALLENGE, stored) == 1
    # The counter rule on the same bytes: a stored count of 1 or more makes it a regression.
    with pytest.raises(AuthError) as refused:
        factor.verify_assertion(
            RECORDED_ASSERTION, RECORDED_ASSERTION_CHALLENGE, recorded_stored(1)
        )
    assert refused.value.code == "passkey_counter_regressed"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        pytest.param("clientDataJSON", flip_origin, id="client-data-origin"),
        pytest.param("attestationObject", flip_rp_id_hash, id="auth-data-rp-id-hash"),
        pytest.param("clientDataJSON", flip_at(10), id="client-data-type"),
    ],
)
def test_recorded_registration_refuses_a_byte_changed(field: str, change: Any) -> None:
    factor = recorded_factor()
    with pytest.raises(AuthError) as refused:
        factor.verify_registration(
            tampered(RECORDED_REGISTRATION, field, change), RECORDED_REGISTRATION_CHALLENGE
        )
    assert refused.value.code == "passkey_invalid"


def test_recorded_registration_refuses_another_challenge_origin_or_rp() -> None:
    other_challenge = bytearray(RECORDED_REGISTRATION_CHALLENGE)
    other_challenge[-1] ^= 0x01
    for factor, challenge in (
        (recorded_factor(), bytes(other_challenge)),
        (PasskeyFactor(RelyingParty("desk.example", "D", "https://x.example"), MfaPolicy()), None),
        (PasskeyFactor(RelyingParty("x.example", "D", "https://desk.example"), MfaPolicy()), None),
    ):
        with pytest.raises(AuthError) as refused:
            factor.verify_registration(
                RECORDED_REGISTRATION, challenge or RECORDED_REGISTRATION_CHALLENGE
            )
        assert refused.value.code == "passkey_invalid"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        pytest.param("signature", flip_at(-1), id="signature"),
        pytest.param("clientDataJSON", flip_origin, id="client-data-origin"),
        pytest.param("authenticatorData", flip_at(0), id="auth-data-rp-id-hash"),
        pytest.param("authenticatorData", flip_at(-1), id="auth-data-counter"),
    ],
)
def test_recorded_assertion_refuses_a_byte_changed(field: str, change: Any) -> None:
    factor = recorded_factor()
    with pytest.raises(AuthError) as refused:
        factor.verify_assertion(
            tampered(RECORDED_ASSERTION, field, change),
            RECORDED_ASSERTION_CHALLENGE,
            recorded_stored(),
        )
    assert refused.value.code == "passkey_invalid"
    # The untouched vector still passes: the refusal was the byte.
    assert (
        factor.verify_assertion(RECORDED_ASSERTION, RECORDED_ASSERTION_CHALLENGE, recorded_stored())
        == 1
    )


async def test_recorded_challenge_row_is_spent_once(inprocess: InProcessApp) -> None:
    """The recorded assertion against a challenge row inserted by hand (its id is the
    challenge's SHA-256): spent once, then refused; a row of another purpose refuses."""
    _, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    now = datetime.now(UTC)
    rows(
        inprocess.db_path,
        "INSERT INTO webauthn_challenges (id, user_id, purpose, created_at, expires_at) "
        "VALUES (?, ?, 'reauth', ?, ?)",
        hashlib.sha256(RECORDED_ASSERTION_CHALLENGE).hexdigest(),
        user_id,
        sqlite_time(now),
        sqlite_time(now + timedelta(minutes=5)),
    )
    db = inprocess.app.state.services.db
    factor = inprocess.app.state.services.mfa.passkeys
    async with db.write() as session:
        with pytest.raises(AuthError) as wrong_purpose:
            await factor.spend_challenge(session, RECORDED_ASSERTION, user_id, "signin")
    assert wrong_purpose.value.code == "passkey_challenge_invalid"
    async with db.write() as session:
        spent = await factor.spend_challenge(session, RECORDED_ASSERTION, user_id, "reauth")
    assert spent == RECORDED_ASSERTION_CHALLENGE
    async with db.write() as session:
        with pytest.raises(AuthError) as again:
            await factor.spend_challenge(session, RECORDED_ASSERTION, user_id, "reauth")
    assert again.value.code == "passkey_challenge_invalid"


# ----- registration ------------------------------------------------------------------------


async def test_register_sign_out_and_sign_in_with_the_passkey(inprocess: InProcessApp) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    key = authenticator_for(inprocess)
    added = await add_passkey(browser, key)
    assert added["mfa_enabled"] is True and len(added["backup_codes"]) == 10
    assert added["passkey"]["name"] == "YubiKey"
    await sign_out_inprocess(browser)

    await start_mfa_sign_in_inprocess(browser, SANDBOX_USERS["alex"])
    options = await browser.post(f"{API}/authenticate/options", headers=JSON)
    assert options.status_code == 200, options.text
    r = await browser.post(
        f"{API}/authenticate/verify", headers=JSON, json={"credential": key.get(options.json())}
    )
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == user_id
    assert "access_token" in browser.client.cookies
    assert [e["method"] for e in audit_events(inprocess.db_path, "signin.succeeded")][-1] == (
        "upwork+passkey"
    )
    listed = (await browser.get(f"{API}/credentials", headers=JSON)).json()
    assert listed[0]["last_used_at"] is not None


async def test_registration_refuses_wrong_origin_rp_id_and_a_spent_challenge(
    inprocess: InProcessApp,
) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    key = authenticator_for(inprocess)
    options = await register_options(browser)
    assert options["publicKey"]["rp"]["id"] == "localhost"
    assert options["publicKey"]["attestation"] == "none"
    wrong_origin = await register_verify(browser, key.create(options, origin=EVIL_ORIGIN))
    assert wrong_origin.status_code == 400 and error_of(wrong_origin) == "passkey_invalid"
    # That answer spent the challenge: the right answer to the same options comes too late.
    late = await register_verify(browser, key.create(options))
    assert late.status_code == 400 and error_of(late) == "passkey_challenge_invalid"

    wrong_rp = await register_verify(
        browser, key.create(await register_options(browser), rp_id=EVIL_RP)
    )
    assert wrong_rp.status_code == 400 and error_of(wrong_rp) == "passkey_invalid"

    expired_options = await register_options(browser)
    expire_passkey_challenges(inprocess)
    expired = await register_verify(browser, key.create(expired_options))
    assert expired.status_code == 400 and error_of(expired) == "passkey_challenge_expired"

    assert stored_passkeys(inprocess, user_id) == []
    assert (await mfa_status(browser))["enabled"] is False


async def test_registration_challenge_belongs_to_the_session_that_asked(
    inprocess: InProcessApp,
) -> None:
    first, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    second, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    key = authenticator_for(inprocess)
    options = await register_options(first)
    stolen = await register_verify(second, key.create(options))
    assert stolen.status_code == 400 and error_of(stolen) == "passkey_challenge_invalid"
    # Not spent by the other session's attempt: the session that asked can still finish.
    ok = await register_verify(first, key.create(options))
    assert ok.status_code == 200, ok.text
    assert len(stored_passkeys(inprocess, user_id)) == 1


async def test_the_same_credential_cannot_be_registered_twice(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    again = await register_verify(
        browser, key.create(await register_options(browser), credential=key.credentials[0])
    )
    assert again.status_code == 409 and error_of(again) == "passkey_already_registered"
    # Nor by another account (credential ids are unique across the site).
    other, other_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["olena"])
    options = await register_options(other)
    theirs = await register_verify(other, key.create(options, credential=key.credentials[0]))
    assert theirs.status_code == 409 and error_of(theirs) == "passkey_already_registered"
    assert len(stored_passkeys(inprocess, user_id)) == 1
    assert stored_passkeys(inprocess, other_id) == []
    assert (await mfa_status(other))["enabled"] is False
    assert count_where(inprocess, "mfa_backup_codes", other_id) == 0
    # The refused attempt left the first registration working.
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    assert (await passkey_sign_in(browser, key)).status_code == 200


def changed_copy(change: Any) -> Any:
    def build(credential: dict[str, Any]) -> Any:
        out = copy.deepcopy(credential)
        change(out)
        return out

    return build


MALFORMED_ASSERTIONS = [
    pytest.param(lambda c: {}, id="empty"),
    pytest.param(lambda c: {"id": c["id"]}, id="no-response"),
    pytest.param(lambda c: {**c, "response": "x"}, id="response-a-string"),
    pytest.param(lambda c: {**c, "response": []}, id="response-a-list"),
    pytest.param(
        changed_copy(lambda c: c["response"].update(clientDataJSON="!!!")),
        id="client-data-not-base64",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(clientDataJSON=b64url(b"[1]"))),
        id="client-data-a-list",
    ),
    pytest.param(
        changed_copy(
            lambda c: c["response"].update(
                clientDataJSON=b64url(b'{"type":"webauthn.get","challenge":5,"origin":"x"}')
            )
        ),
        id="client-data-challenge-a-number",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(clientDataJSON=b64url(b"\xff\xfe"))),
        id="client-data-not-utf8",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(clientDataJSON=12)),
        id="client-data-a-number",
    ),
    pytest.param(changed_copy(lambda c: c.update(rawId=5, id=5)), id="raw-id-a-number"),
    pytest.param(
        changed_copy(lambda c: c.update(rawId="A" * 2000, id="A" * 2000)),
        id="raw-id-too-long",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(authenticatorData="AAAA")),
        id="auth-data-short",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].pop("authenticatorData")),
        id="auth-data-missing",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(signature="AAAA")),
        id="signature-garbage",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(signature=7)),
        id="signature-a-number",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(userHandle=7)),
        id="user-handle-a-number",
    ),
    pytest.param(changed_copy(lambda c: c.update(type="password")), id="wrong-type"),
    pytest.param(
        changed_copy(lambda c: c.update(authenticatorAttachment="pocket")),
        id="bad-attachment",
    ),
]


@pytest.mark.parametrize("mangle", MALFORMED_ASSERTIONS)
async def test_malformed_assertion_is_a_clear_400(inprocess: InProcessApp, mangle: Any) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    r = await signin_verify(browser, mangle(key.get(await signin_options(browser))))
    assert r.status_code == 400, r.text
    assert error_of(r) in {
        "passkey_invalid",
        "passkey_unknown",
        "passkey_challenge_invalid",
    }, r.text
    assert "access_token" not in browser.client.cookies
    # Refused and counted (the same lockout as a wrong code); the step goes on.
    assert count_where(inprocess, "mfa_failures", user_id) == 1
    assert (await passkey_sign_in(browser, key)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-credential"),
        pytest.param({"credential": "abc"}, id="credential-a-string"),
        pytest.param({"credential": [1, 2]}, id="credential-a-list"),
        pytest.param({"credential": None}, id="credential-null"),
    ],
)
async def test_bodies_that_are_not_a_credential_are_a_422(
    inprocess: InProcessApp, body: dict[str, Any]
) -> None:
    browser, _, _, _ = await passkey_user(inprocess)
    for path in ("register/verify", "reauth/verify"):
        r = await browser.post(f"{API}/{path}", headers=csrf_headers(browser), json=body)
        assert r.status_code == 422, (path, r.text)
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    await signin_options(browser)
    r = await browser.post(f"{API}/authenticate/verify", headers=JSON, json=body)
    assert r.status_code == 422, r.text
    r = await browser.post(
        f"{API}/authenticate/verify",
        headers={**JSON, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 422, r.text


MALFORMED_REGISTRATIONS = [
    pytest.param(lambda c: {}, id="empty"),
    pytest.param(lambda c: {**c, "response": "x"}, id="response-a-string"),
    pytest.param(
        changed_copy(lambda c: c["response"].update(attestationObject="AAAA")),
        id="attestation-garbage",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(attestationObject=b64url(b"\x05"))),
        id="attestation-a-cbor-int",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].update(attestationObject=b64url(b"\x80"))),
        id="attestation-a-cbor-list",
    ),
    pytest.param(
        changed_copy(lambda c: c["response"].pop("attestationObject")),
        id="attestation-missing",
    ),
    pytest.param(changed_copy(lambda c: c.update(type="x")), id="wrong-type"),
]


@pytest.mark.parametrize("mangle", MALFORMED_REGISTRATIONS)
async def test_malformed_registration_is_a_clear_400(inprocess: InProcessApp, mangle: Any) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    key = authenticator_for(inprocess)
    r = await register_verify(browser, mangle(key.create(await register_options(browser))))
    assert r.status_code == 400, r.text
    assert error_of(r) in {"passkey_invalid", "passkey_challenge_invalid"}, r.text
    assert stored_passkeys(inprocess, user_id) == []


@pytest.mark.parametrize(
    "transports",
    [
        pytest.param(5, id="a-number"),
        pytest.param("usb", id="a-string"),
        pytest.param({"usb": 1}, id="an-object"),
    ],
)
async def test_registration_with_odd_transports_is_not_a_500(
    inprocess: InProcessApp, transports: Any
) -> None:
    """py_webauthn ignores a ``response.transports`` that is not a list; ours must too (it
    was iterated: a number was a TypeError, a 500, and "usb" was stored as ["u", "s",
    "b"]). The registration goes through, with known transports only."""
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    key = authenticator_for(inprocess)
    credential = key.create(await register_options(browser))
    credential["response"]["transports"] = transports
    r = await register_verify(browser, credential)
    assert r.status_code == 200, r.text
    [(stored,)] = rows(
        inprocess.db_path, "SELECT transports FROM webauthn_credentials WHERE user_id=?", user_id
    )
    assert json.loads(stored) == []


# ----- the sign-in's MFA step and confirmations: refusals ---------------------------------


async def test_sign_in_refuses_wrong_origin_and_rp_id(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    options = await signin_options(browser)
    assert options["publicKey"]["rpId"] == "localhost"
    assert [c["id"] for c in options["publicKey"]["allowCredentials"]] == [key.credentials[0].id]
    wrong_origin = await passkey_sign_in(browser, key, origin=EVIL_ORIGIN)
    assert wrong_origin.status_code == 400 and error_of(wrong_origin) == "passkey_invalid"
    wrong_rp = await passkey_sign_in(browser, key, rp_id=EVIL_RP)
    assert wrong_rp.status_code == 400 and error_of(wrong_rp) == "passkey_invalid"
    assert "access_token" not in browser.client.cookies
    assert [e["reason_code"] for e in events(inprocess, "mfa.passkey_refused", user_id)] == [
        "passkey_invalid",
        "passkey_invalid",
    ]
    assert [e["failures"] for e in events(inprocess, "mfa.failed", user_id)] == [1, 2]
    assert (await passkey_sign_in(browser, key)).status_code == 200


async def test_an_assertion_is_accepted_once(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    assertion = key.get(await reauth_options(browser))
    first = await reauth_verify(browser, assertion)
    assert first.status_code == 200, first.text
    again = await reauth_verify(browser, assertion)
    assert again.status_code == 400 and error_of(again) == "passkey_challenge_invalid"

    # At sign-in: the assertion that signed in once does not sign in again.
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    used = key.get(await signin_options(browser))
    assert (await signin_verify(browser, used)).status_code == 200
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    await signin_options(browser)  # a live challenge of this sign-in, not the one signed
    replay = await signin_verify(browser, used)
    assert replay.status_code == 400 and error_of(replay) == "passkey_challenge_invalid"
    assert "access_token" not in browser.client.cookies
    assert stored_passkeys(inprocess, user_id)[0][2] == 2  # the two accepted, no more


async def test_an_expired_challenge_is_refused(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    options = await reauth_options(browser)
    expire_passkey_challenges(inprocess)
    r = await reauth_verify(browser, key.get(options))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_expired"

    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    options = await signin_options(browser)
    expire_passkey_challenges(inprocess)
    r = await signin_verify(browser, key.get(options))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_expired"
    assert [e["reason_code"] for e in events(inprocess, "mfa.passkey_refused", user_id)] == [
        "passkey_challenge_expired",
        "passkey_challenge_expired",
    ]
    # Nothing waits: a new challenge works at once.
    assert (await passkey_sign_in(browser, key)).status_code == 200


async def test_a_challenge_serves_only_its_purpose_and_its_sign_in(
    inprocess: InProcessApp,
) -> None:
    signed_in, user_id, key, _ = await passkey_user(inprocess)

    # Register options answered as a confirmation: another purpose.
    register = await register_options(signed_in)
    r = await reauth_verify(signed_in, key.get(register))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_invalid"

    # Sign-in A's challenge answered in sign-in B (the same user, another browser).
    a = await mfa_step(inprocess)
    b = await mfa_step(inprocess)
    a_options = await signin_options(a)
    await signin_options(b)
    r = await signin_verify(b, key.get(a_options))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_invalid"

    # A confirmation challenge of the signed-in session answered at sign-in B ...
    r = await signin_verify(b, key.get(await reauth_options(signed_in)))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_invalid"
    # ... and a sign-in challenge answered as the signed-in session's confirmation.
    r = await reauth_verify(signed_in, key.get(await signin_options(b)))
    assert r.status_code == 400 and error_of(r) == "passkey_challenge_invalid"
    assert "access_token" not in b.client.cookies

    # A's challenge was not spent by B's attempt: A finishes with it.
    ok = await signin_verify(a, key.get(a_options))
    assert ok.status_code == 200, ok.text
    assert len(events(inprocess, "mfa.passkey_refused", user_id)) == 4


async def test_unknown_and_another_users_credentials_are_refused(
    inprocess: InProcessApp,
) -> None:
    alex, alex_id, alex_key, _ = await passkey_user(inprocess, "alex")
    olena, olena_id, olena_key, _ = await passkey_user(inprocess, "olena")
    await sign_out_inprocess(alex)
    await sign_out_inprocess(olena)
    step = await mfa_step(inprocess, "olena")

    unknown = await passkey_sign_in(step, olena_key, claim_id=b64url(b"\x01" * 32))
    assert unknown.status_code == 400 and error_of(unknown) == "passkey_unknown"
    # Alex's own key and credential, answering Olena's sign-in.
    alexs = await signin_verify(
        step, alex_key.get(await signin_options(step), credential=alex_key.credentials[0])
    )
    assert alexs.status_code == 400 and error_of(alexs) == "passkey_unknown"
    # Olena's key signing, claiming Alex's credential id.
    claimed = await passkey_sign_in(step, olena_key, claim_id=alex_key.credentials[0].id)
    assert claimed.status_code == 400 and error_of(claimed) == "passkey_unknown"
    # Alex's key signing, claiming Olena's credential id: her stored key does not verify it.
    forged = await signin_verify(
        step,
        alex_key.get(
            await signin_options(step),
            credential=alex_key.credentials[0],
            claim_id=olena_key.credentials[0].id,
        ),
    )
    assert forged.status_code == 400 and error_of(forged) == "passkey_invalid"
    assert "access_token" not in step.client.cookies
    assert [e["reason_code"] for e in events(inprocess, "mfa.passkey_refused", olena_id)] == [
        "passkey_unknown",
        "passkey_unknown",
        "passkey_unknown",
        "passkey_invalid",
    ]
    assert events(inprocess, "mfa.passkey_refused", alex_id) == []
    assert count_where(inprocess, "mfa_failures", olena_id) == 4
    assert count_where(inprocess, "mfa_failures", alex_id) == 0
    # Nobody's counter moved.
    assert [p[2] for p in stored_passkeys(inprocess, olena_id)] == [0]
    assert [p[2] for p in stored_passkeys(inprocess, alex_id)] == [0]


async def test_a_counter_that_goes_back_is_refused_and_audited(
    inprocess: InProcessApp,
) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    passkey_id = stored_passkeys(inprocess, user_id)[0][0]
    assert (await reauth_passkey(browser, key, counter=5)).status_code == 200
    assert stored_passkeys(inprocess, user_id)[0][2] == 5

    for counter in (3, 5, 0):  # lower, the same, and a counter that vanished
        r = await reauth_passkey(browser, key, counter=counter)
        assert r.status_code == 400 and error_of(r) == "passkey_counter_regressed", counter
        assert "copied" in r.json()["message"]
    regressed = events(inprocess, "mfa.passkey_counter_regressed", user_id)
    assert [(e["passkey_id"], e["stored_count"]) for e in regressed] == [(passkey_id, 5)] * 3
    assert stored_passkeys(inprocess, user_id)[0][2] == 5
    assert count_where(inprocess, "mfa_failures", user_id) == 3

    # At the sign-in's MFA step too.
    await sign_out_inprocess(browser)
    browser = await mfa_step(inprocess)
    r = await passkey_sign_in(browser, key, counter=4)
    assert r.status_code == 400 and error_of(r) == "passkey_counter_regressed"
    assert "access_token" not in browser.client.cookies
    assert len(events(inprocess, "mfa.passkey_counter_regressed", user_id)) == 4
    ok = await passkey_sign_in(browser, key, counter=6)
    assert ok.status_code == 200, ok.text
    assert stored_passkeys(inprocess, user_id)[0][2] == 6


async def test_an_authenticator_without_a_counter_is_accepted(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess, counter_step=0)
    for _ in range(2):
        await sign_out_inprocess(browser)
        browser = await mfa_step(inprocess)
        r = await passkey_sign_in(browser, key)
        assert r.status_code == 200, r.text
    assert (await reauth_passkey(browser, key)).status_code == 200
    assert stored_passkeys(inprocess, user_id)[0][2] == 0
    assert events(inprocess, "mfa.passkey_counter_regressed", user_id) == []


async def test_passkey_step_without_a_challenge_or_without_passkeys(
    inprocess: InProcessApp,
) -> None:
    nobody = inprocess.browser()
    r = await nobody.post(f"{API}/authenticate/options", headers=JSON)
    assert r.status_code == 400 and error_of(r) == "mfa_challenge_missing"
    r = await nobody.post(f"{API}/authenticate/verify", headers=JSON, json={"credential": {}})
    assert r.status_code == 400 and error_of(r) == "mfa_challenge_missing"
    # An app-only user at the MFA step has no passkey to be asked for.
    browser, _ = await sign_in_inprocess(inprocess, SANDBOX_USERS["olena"])
    await enable_mfa_inprocess(browser)
    r = await browser.post(f"{API}/reauth/options", headers=csrf_headers(browser))
    assert r.status_code == 400 and error_of(r) == "passkey_none"
    await sign_out_inprocess(browser)
    step = await mfa_step(inprocess, "olena")
    r = await step.post(f"{API}/authenticate/options", headers=JSON)
    assert r.status_code == 400 and error_of(r) == "passkey_none"


# ----- the lockout -------------------------------------------------------------------------


async def test_five_failed_assertions_lock_and_kill_the_sign_in(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    await sign_out_inprocess(browser)
    step = await mfa_step(inprocess)
    answers = [await passkey_sign_in(step, key, origin=EVIL_ORIGIN) for _ in range(5)]
    assert [r.status_code for r in answers] == [400, 400, 400, 400, 429]
    assert error_of(answers[4]) == "mfa_locked"
    assert 800 <= int(answers[4].headers["retry-after"]) <= 901
    assert len(events(inprocess, "mfa.locked", user_id)) == 1
    # This sign-in is dead: no more options, no more answers.
    r = await step.post(f"{API}/authenticate/options", headers=JSON)
    assert r.status_code == 400 and error_of(r) == "mfa_challenge_expired"

    # A new sign-in is locked too, even with the right passkey (and nothing is counted).
    fresh_step = await mfa_step(inprocess)
    locked = await passkey_sign_in(fresh_step, key)
    assert locked.status_code == 429 and error_of(locked) == "mfa_locked"
    assert int(locked.headers["retry-after"]) > 0
    assert "access_token" not in fresh_step.client.cookies
    assert count_where(inprocess, "mfa_failures", user_id) == 5

    # The window passes (the failures made 16 minutes ago): the dead sign-in stays dead,
    # the live one goes through.
    old = datetime.now(UTC) - MfaPolicy().window - timedelta(minutes=1)
    rows(inprocess.db_path, "UPDATE mfa_failures SET created_at=?", sqlite_time(old))
    r = await step.post(f"{API}/authenticate/options", headers=JSON)
    assert r.status_code == 400 and error_of(r) == "mfa_challenge_expired"
    ok = await passkey_sign_in(fresh_step, key)
    assert ok.status_code == 200, ok.text


async def test_failed_assertions_and_wrong_codes_share_the_lockout(
    inprocess: InProcessApp,
) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["olena"])
    secret, _ = await enable_mfa_inprocess(browser)
    key = authenticator_for(inprocess)
    await add_passkey(browser, key)  # enabling the app just now made this session fresh
    await sign_out_inprocess(browser)

    step = await mfa_step(inprocess, "olena")
    statuses = []
    for _ in range(3):
        statuses.append(
            (await submit_inprocess(step, wrong_code(secret), as_json=True)).status_code
        )
    statuses.append((await passkey_sign_in(step, key, rp_id=EVIL_RP)).status_code)
    last = await passkey_sign_in(step, key, origin=EVIL_ORIGIN)
    assert statuses == [400, 400, 400, 400] and last.status_code == 429
    assert error_of(last) == "mfa_locked" and "retry-after" in last.headers

    # The right code in a new sign-in: locked as well.
    other = await mfa_step(inprocess, "olena")
    r = await submit_inprocess(other, totp_now(inprocess, user_id, secret), as_json=True)
    assert r.status_code == 429 and error_of(r) == "mfa_locked"


async def test_failed_confirmations_count_toward_the_lockout(inprocess: InProcessApp) -> None:
    browser, user_id, key, added = await passkey_user(inprocess)
    answers = [await reauth_passkey(browser, key, origin=EVIL_ORIGIN) for _ in range(5)]
    assert [r.status_code for r in answers] == [400, 400, 400, 400, 429]
    locked = await reauth_passkey(browser, key)
    assert locked.status_code == 429 and error_of(locked) == "mfa_locked"
    by_code = await reauth_code(browser, added["backup_codes"][0])
    assert by_code.status_code == 429 and error_of(by_code) == "mfa_locked"
    assert count_where(inprocess, "mfa_failures", user_id) == 5


# ----- the fresh-factor rule ---------------------------------------------------------------


async def test_changes_need_a_fresh_factor(inprocess: InProcessApp) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    secret, backup = await enable_mfa_inprocess(browser)
    make_stale(inprocess, user_id)
    assert (await mfa_status(browser))["fresh_until"] is None

    refused = await browser.post(f"{API}/register/options", headers=csrf_headers(browser))
    assert refused.status_code == 403 and error_of(refused) == "mfa_reauth_required"

    wrong = await reauth_code(browser, wrong_code(secret))
    assert wrong.status_code == 400 and error_of(wrong) == "mfa_invalid_code"
    confirmed = await reauth_code(browser, totp_now(inprocess, user_id, secret))
    assert confirmed.status_code == 200, confirmed.text
    fresh_until = datetime.fromisoformat(confirmed.json()["fresh_until"])
    assert timedelta(minutes=4) < fresh_until - datetime.now(UTC) <= timedelta(minutes=5)
    assert (await mfa_status(browser))["fresh_until"] is not None
    assert events(inprocess, "mfa.reauthenticated", user_id)[-1]["factor"] == "totp"

    key = authenticator_for(inprocess)
    added = await add_passkey(browser, key)
    assert added["backup_codes"] == []  # MFA was on already
    passkey_id = added["passkey"]["id"]

    # The window passes between the options and the answer: refused at the answer.
    options = await register_options(browser)
    make_stale(inprocess, user_id)
    late = await register_verify(browser, authenticator_for(inprocess).create(options))
    assert late.status_code == 403 and error_of(late) == "mfa_reauth_required"
    removal = await remove_passkey(browser, passkey_id)
    assert removal.status_code == 403 and error_of(removal) == "mfa_reauth_required"
    totp_off = await browser.post("/api/security/mfa/totp/remove", headers=csrf_headers(browser))
    assert totp_off.status_code == 403 and error_of(totp_off) == "mfa_reauth_required"
    assert len(stored_passkeys(inprocess, user_id)) == 1

    # A backup code confirms too.
    assert (await reauth_code(browser, backup[0])).status_code == 200
    assert events(inprocess, "mfa.reauthenticated", user_id)[-1]["factor"] == "backup"
    assert (await register_options(browser))["publicKey"]["excludeCredentials"]

    # And a passkey; then the removal goes through (the app keeps MFA on).
    make_stale(inprocess, user_id)
    by_passkey = await reauth_passkey(browser, key)
    assert by_passkey.status_code == 200, by_passkey.text
    assert events(inprocess, "mfa.reauthenticated", user_id)[-1]["factor"] == "passkey"
    removed = await remove_passkey(browser, passkey_id)
    assert removed.status_code == 200 and removed.json()["mfa_enabled"] is True
    assert stored_passkeys(inprocess, user_id) == []


async def test_freshness_belongs_to_one_session(inprocess: InProcessApp) -> None:
    first, user_id, key, _ = await passkey_user(inprocess)
    second = await mfa_step(inprocess)
    assert (await passkey_sign_in(second, key)).status_code == 200
    make_stale(inprocess, user_id)
    assert (await reauth_passkey(first, key)).status_code == 200
    r = await second.post(f"{API}/register/options", headers=csrf_headers(second))
    assert r.status_code == 403 and error_of(r) == "mfa_reauth_required"
    assert (await mfa_status(second))["fresh_until"] is None
    assert (await mfa_status(first))["fresh_until"] is not None


@pytest.mark.parametrize("factor", ["passkey", "totp"])
async def test_the_sign_in_mfa_step_makes_the_session_fresh(
    inprocess: InProcessApp, factor: str
) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    secret, _ = await enable_mfa_inprocess(browser)
    key = authenticator_for(inprocess)
    await add_passkey(browser, key)
    await sign_out_inprocess(browser)
    make_stale(inprocess, user_id)

    step = await mfa_step(inprocess)
    if factor == "passkey":
        r = await passkey_sign_in(step, key)
    else:
        r = await submit_inprocess(step, totp_now(inprocess, user_id, secret), as_json=True)
    assert r.status_code == 200, r.text
    assert (await mfa_status(step))["fresh_until"] is not None
    second = await add_passkey(step, authenticator_for(inprocess), "Phone")
    assert second["backup_codes"] == []
    assert len(stored_passkeys(inprocess, user_id)) == 2


# ----- combinations of factors -------------------------------------------------------------


async def test_passkey_first_then_the_app_then_each_removed(inprocess: InProcessApp) -> None:
    browser, user_id, key, added = await passkey_user(inprocess)
    assert len(added["backup_codes"]) == 10
    assert events(inprocess, "mfa.enabled", user_id) == [{"factor": "passkey"}]
    status = await mfa_status(browser)
    assert status["enabled"] is True and status["totp_enabled"] is False
    assert status["passkeys"] == 1 and status["backup_codes_left"] == 10
    codes_before = rows(
        inprocess.db_path, "SELECT code_hash FROM mfa_backup_codes WHERE user_id=?", user_id
    )

    # Adding the app later needs a fresh factor, and brings no new backup codes.
    make_stale(inprocess, user_id)
    r = await browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))
    assert r.status_code == 403 and error_of(r) == "mfa_reauth_required"
    assert (await reauth_passkey(browser, key)).status_code == 200
    _secret, codes = await enable_mfa_inprocess(browser)
    assert codes == []
    assert (
        rows(inprocess.db_path, "SELECT code_hash FROM mfa_backup_codes WHERE user_id=?", user_id)
        == codes_before
    )
    status = await mfa_status(browser)
    assert status["totp_enabled"] is True and status["passkeys"] == 1
    assert len(events(inprocess, "mfa.enabled", user_id)) == 1

    # Removing the app keeps MFA on (the passkey is left) and the backup codes with it.
    r = await browser.post("/api/security/mfa/totp/remove", headers=csrf_headers(browser))
    assert r.status_code == 200 and r.json()["mfa_enabled"] is True
    assert len(events(inprocess, "mfa.totp_removed", user_id)) == 1
    status = await mfa_status(browser)
    assert status["enabled"] is True and status["totp_enabled"] is False
    assert status["backup_codes_left"] == 10

    # Removing the last passkey turns MFA off and the backup codes go.
    r = await remove_passkey(browser, added["passkey"]["id"])
    assert r.status_code == 200 and r.json()["mfa_enabled"] is False
    assert count_where(inprocess, "mfa_backup_codes", user_id) == 0
    status = await mfa_status(browser)
    assert status["enabled"] is False and status["passkeys"] == 0
    assert len(events(inprocess, "mfa.disabled", user_id)) == 1
    # With MFA off, a new passkey needs no confirmation and brings new codes.
    make_stale(inprocess, user_id)
    again = await add_passkey(browser, authenticator_for(inprocess))
    assert len(again["backup_codes"]) == 10


async def test_removing_one_of_two_passkeys_keeps_mfa_on(inprocess: InProcessApp) -> None:
    browser, user_id, key, added = await passkey_user(inprocess)
    phone = authenticator_for(inprocess)
    second = await add_passkey(browser, phone, "Phone")
    assert second["backup_codes"] == []
    r = await remove_passkey(browser, added["passkey"]["id"])
    assert r.status_code == 200 and r.json()["mfa_enabled"] is True
    assert count_where(inprocess, "mfa_backup_codes", user_id) == 10
    await sign_out_inprocess(browser)
    step = await mfa_step(inprocess)
    options = await signin_options(step)
    assert [c["id"] for c in options["publicKey"]["allowCredentials"]] == [phone.credentials[0].id]
    # The removed passkey is refused; the other one signs in.
    gone = await signin_verify(step, key.get(options, credential=key.credentials[0]))
    assert gone.status_code == 400 and error_of(gone) == "passkey_unknown"
    assert (await passkey_sign_in(step, phone)).status_code == 200


async def test_disable_removes_the_passkeys_too(inprocess: InProcessApp) -> None:
    browser, user_id = await sign_in_inprocess(inprocess, SANDBOX_USERS["alex"])
    secret, _ = await enable_mfa_inprocess(browser)
    await add_passkey(browser, authenticator_for(inprocess), "One")
    await add_passkey(browser, authenticator_for(inprocess), "Two")
    assert len(stored_passkeys(inprocess, user_id)) == 2
    r = await browser.post(
        "/api/security/mfa/disable",
        headers=csrf_headers(browser),
        json={"code": totp_now(inprocess, user_id, secret)},
    )
    assert r.status_code == 200, r.text
    assert stored_passkeys(inprocess, user_id) == []
    assert count_where(inprocess, "mfa_backup_codes", user_id) == 0
    status = await mfa_status(browser)
    assert status == {**status, "enabled": False, "totp_enabled": False, "passkeys": 0}


async def test_passkey_only_user_codes_at_the_mfa_step(inprocess: InProcessApp) -> None:
    browser, user_id, _, added = await passkey_user(inprocess)
    # A pending (never confirmed) app secret: its codes are no factor.
    setup = await browser.post("/api/security/mfa/setup", headers=csrf_headers(browser))
    assert setup.status_code == 200, setup.text
    pending = setup.json()["secret"]
    await sign_out_inprocess(browser)

    step = await mfa_step(inprocess)
    for code in (code_at(pending), wrong_code(pending)):
        r = await submit_inprocess(step, code, as_json=True)
        assert r.status_code == 400 and error_of(r) == "mfa_invalid_code", code
    assert count_where(inprocess, "mfa_failures", user_id) == 2
    ok = await submit_inprocess(step, added["backup_codes"][0], as_json=True)
    assert ok.status_code == 200, ok.text
    assert audit_events(inprocess.db_path, "signin.succeeded")[-1]["method"] == "upwork+backup"
    assert (await mfa_status(step))["backup_codes_left"] == 9


# ----- rename, remove, the list --------------------------------------------------------------


async def test_rename(inprocess: InProcessApp) -> None:
    browser, user_id, _, added = await passkey_user(inprocess)
    passkey_id = added["passkey"]["id"]
    options = await register_options(browser)
    make_stale(inprocess, user_id)  # a name is no factor: no confirmation needed
    r = await rename_passkey(browser, passkey_id, "  Work   laptop\t")
    assert r.status_code == 200 and r.json()["name"] == "Work laptop"
    assert r.json()["id"] == passkey_id
    assert stored_passkeys(inprocess, user_id)[0][4] == "Work laptop"
    r = await rename_passkey(browser, passkey_id, "é" * 64)
    assert r.status_code == 200 and r.json()["name"] == "é" * 64
    for bad in ("", "   ", "x" * 65, "bad\x00name", "bad\u200bname", None, 5):
        r = await rename_passkey(browser, passkey_id, bad)
        assert r.status_code == 422, (bad, r.text)
    assert stored_passkeys(inprocess, user_id)[0][4] == "é" * 64
    r = await browser.client.patch(
        f"{API}/credentials/{passkey_id}", headers=JSON, json={"name": "No CSRF"}
    )
    assert r.status_code == 403
    assert len(events(inprocess, "mfa.passkey_renamed", user_id)) == 2
    listed = (await browser.get(f"{API}/credentials", headers=JSON)).json()
    assert [p["name"] for p in listed] == ["é" * 64]
    # Names are checked at registration too.
    r = await register_verify(browser, authenticator_for(inprocess).create(options), name="   ")
    assert r.status_code == 422 and error_of(r) == "passkey_name_invalid"


async def test_another_users_passkey_is_not_found(inprocess: InProcessApp) -> None:
    _alex, alex_id, _, added = await passkey_user(inprocess, "alex")
    olena, _, _, _ = await passkey_user(inprocess, "olena")
    alexs = added["passkey"]["id"]
    for r in (
        await rename_passkey(olena, alexs, "Mine now"),
        await remove_passkey(olena, alexs),
        await rename_passkey(olena, "no-such-passkey", "x"),
        await remove_passkey(olena, "no-such-passkey"),
    ):
        assert r.status_code == 404 and error_of(r) == "passkey_not_found", r.text
    assert stored_passkeys(inprocess, alex_id)[0][4] == "YubiKey"
    listed = (await olena.get(f"{API}/credentials", headers=JSON)).json()
    assert alexs not in [p["id"] for p in listed] and len(listed) == 1


# ----- the security log --------------------------------------------------------------------


async def test_passkey_events_are_audited(inprocess: InProcessApp) -> None:
    browser, user_id, key, _added = await passkey_user(inprocess)
    passkey_id, credential_id, _, public_key, _ = stored_passkeys(inprocess, user_id)[0]
    assert credential_id == key.credentials[0].id
    fingerprint = hashlib.sha256(public_key).hexdigest()
    [event] = events(inprocess, "mfa.passkey_added", user_id)
    assert event["passkey_id"] == passkey_id and event["public_key_sha256"] == fingerprint
    assert event["aaguid"] == "00000000-0000-0000-0000-000000000000"
    assert event["backed_up"] is False
    # No key material or credential id in clear in the log.
    for row in rows(inprocess.db_path, "SELECT details FROM audit_events WHERE user_id=?", user_id):
        assert credential_id not in row[0]

    assert (await reauth_passkey(browser, key)).status_code == 200
    assert events(inprocess, "mfa.passkey_used", user_id) == [{"passkey_id": passkey_id}]
    assert (await reauth_passkey(browser, key, origin=EVIL_ORIGIN)).status_code == 400
    assert events(inprocess, "mfa.passkey_refused", user_id) == [{"reason_code": "passkey_invalid"}]
    assert (await reauth_passkey(browser, key, counter=0)).status_code == 400
    assert events(inprocess, "mfa.passkey_counter_regressed", user_id) == [
        {"passkey_id": passkey_id, "stored_count": 1}
    ]
    assert (await rename_passkey(browser, passkey_id, "Blue key")).status_code == 200
    assert events(inprocess, "mfa.passkey_renamed", user_id) == [{"passkey_id": passkey_id}]
    assert (await reauth_passkey(browser, key)).status_code == 200
    assert (await remove_passkey(browser, passkey_id)).status_code == 200
    assert events(inprocess, "mfa.passkey_removed", user_id) == [
        {"passkey_id": passkey_id, "public_key_sha256": fingerprint}
    ]
    assert len(events(inprocess, "mfa.disabled", user_id)) == 1


# ----- concurrency ---------------------------------------------------------------------------


def twin(app: InProcessApp, browser: AsyncBrowser) -> AsyncBrowser:
    """Another client with the same cookies (the same browser, two tabs racing)."""
    other = app.browser()
    for cookie in browser.client.cookies.jar:
        other.client.cookies.jar.set_cookie(cookie)
    return other


async def test_one_assertion_sent_twice_at_once_signs_in_once(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    await sign_out_inprocess(browser)
    step = await mfa_step(inprocess)
    other = twin(inprocess, step)
    assertion = key.get(await signin_options(step))
    answers = await asyncio.gather(signin_verify(step, assertion), signin_verify(other, assertion))
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    assert len(events(inprocess, "mfa.passkey_used", user_id)) == 1
    assert stored_passkeys(inprocess, user_id)[0][2] == 1
    succeeded = rows(
        inprocess.db_path,
        "SELECT count(*) FROM audit_events WHERE event_type='signin.succeeded' AND user_id=?",
        user_id,
    )
    assert succeeded[0][0] == 2  # the first sign-in, and one of the two racing


async def test_one_confirmation_sent_twice_at_once_counts_once(inprocess: InProcessApp) -> None:
    browser, user_id, key, _ = await passkey_user(inprocess)
    other = twin(inprocess, browser)
    assertion = key.get(await reauth_options(browser))
    answers = await asyncio.gather(
        reauth_verify(browser, assertion), reauth_verify(other, assertion)
    )
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    assert len(events(inprocess, "mfa.passkey_used", user_id)) == 1
    assert stored_passkeys(inprocess, user_id)[0][2] == 1


async def test_racing_assertions_forced_interleaving_do_not_deadlock(
    inprocess: InProcessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above with its worst interleaving forced (PostgreSQL only: SQLite runs one
    write transaction at a time): both requests past the MFA challenge check; the winner's
    sign-in consumes the MFA challenge, then the loser's refusal is recorded, then both go
    on. One must sign in, the other get a plain 400."""
    if not inprocess.db_path.is_postgres:
        pytest.skip("row locks interleave on PostgreSQL only")
    browser, user_id, key, _ = await passkey_user(inprocess)
    await sign_out_inprocess(browser)
    step = await mfa_step(inprocess)
    other = twin(inprocess, step)
    mfa = inprocess.app.state.services.mfa
    both_live = asyncio.Barrier(2)
    consumed, refused = asyncio.Event(), asyncio.Event()
    real_live, real_consume = mfa.challenges.live, mfa.challenges.consume
    real_fail = mfa.lockout.fail

    async def wait(event: asyncio.Event | asyncio.Barrier) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 3)

    async def live(cookie_value: str | None) -> Any:
        found = await real_live(cookie_value)
        await wait(both_live)
        return found

    async def consume(db: Any, challenge_id: str) -> bool:  # the winner, in _finish_mfa
        done = await real_consume(db, challenge_id)
        consumed.set()
        await wait(refused)
        return bool(done)

    async def fail(db: Any, user: Any, challenge_id: str | None, meta: Any) -> bool:  # the loser
        await wait(consumed)
        refused.set()
        await asyncio.sleep(0.3)  # the winner goes on to record its sign-in
        return bool(await real_fail(db, user, challenge_id, meta))

    assertion = key.get(await signin_options(step))
    monkeypatch.setattr(mfa.challenges, "live", live)
    monkeypatch.setattr(mfa.challenges, "consume", consume)
    monkeypatch.setattr(mfa.lockout, "fail", fail)
    answers = await asyncio.gather(signin_verify(step, assertion), signin_verify(other, assertion))
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    assert len(events(inprocess, "mfa.passkey_used", user_id)) == 1


async def test_a_passkeys_only_user_turns_mfa_off_and_renews_codes_after_a_passkey(
    inprocess: InProcessApp,
) -> None:
    """/mfa/disable and /mfa/backup-codes take ``"code": ""`` from a session that proved a
    factor lately (here a passkey): a passkeys-only user needs no backup code for them. A
    stale session is refused, and a missing code is still a 422."""
    browser, user_id, key, _ = await passkey_user(inprocess)
    make_stale(inprocess, user_id)

    def change(path: str, body: dict[str, Any]) -> Any:
        return browser.post(f"/api/security/mfa/{path}", headers=csrf_headers(browser), json=body)

    assert (await change("backup-codes", {})).status_code == 422
    stale = await change("backup-codes", {"code": ""})
    assert stale.status_code == 403 and error_of(stale) == "mfa_reauth_required"
    assert (await reauth_passkey(browser, key)).status_code == 200
    renewed = await change("backup-codes", {"code": ""})
    assert renewed.status_code == 200 and len(renewed.json()["backup_codes"]) == 10

    make_stale(inprocess, user_id)
    stale = await change("disable", {"code": ""})
    assert stale.status_code == 403 and error_of(stale) == "mfa_reauth_required"
    assert (await mfa_status(browser))["enabled"] is True
    assert (await reauth_passkey(browser, key)).status_code == 200
    off = await change("disable", {"code": ""})
    assert off.status_code == 200 and off.json()["mfa_enabled"] is False
    assert stored_passkeys(inprocess, user_id) == []
    assert events(inprocess, "mfa.disabled", user_id)
