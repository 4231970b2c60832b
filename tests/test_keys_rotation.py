"""Rotating the encryption key ring and the JWT signing keys, losing nothing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt

from upwork_assistant.security import rotation
from upwork_assistant.security.aad import jwt_key_aad, mfa_secret_aad, upwork_token_aad
from upwork_assistant.security.keys import KeyRing, Sealed
from upwork_assistant.services import Services

from .fixtures import SANDBOX_USERS, RunningApp
from .helpers import rows
from .test_mfa import enable_mfa
from .test_security_log import cli, verify
from .upwork_helpers import JSON, csrf_headers, stored_tokens, sync


def secrets_file(app: RunningApp) -> dict[str, str]:
    return json.loads((app.settings.data_dir / "secrets.json").read_text())


def test_rotate_moves_every_ciphertext_to_the_new_key(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    alex, alex_id = sign_in(running, SANDBOX_USERS["alex"])
    olena, olena_id = sign_in(running, SANDBOX_USERS["olena"])
    mfa_secret, _ = enable_mfa(olena)
    # One ciphertext of every kind: alex's setup stays pending (users.mfa_pending_ct).
    pending = alex.post("/api/security/mfa/setup", headers=csrf_headers(alex)).json()["secret"]
    before = {uid: stored_tokens(running, uid) for uid in (alex_id, olena_id)}
    old_ring = KeyRing(secrets_file(running)["TOKEN_ENCRYPTION_KEYS"])
    jwt_keys = _jwt_private_keys(running, old_ring)
    old_kid = old_ring.primary_id

    status = cli(running, "keys", "status")
    assert f"{old_kid}  primary" in status.stdout

    result = cli(running, "keys", "rotate", "--add-key")
    assert result.returncode == 0, result.stdout + result.stderr
    ring = KeyRing(secrets_file(running)["TOKEN_ENCRYPTION_KEYS"])
    assert ring.primary_id != old_kid and old_kid in ring.key_ids
    assert "moved" in result.stdout

    kids = rows(
        running.db_path, "SELECT access_token_kid, refresh_token_kid FROM upwork_connections"
    )
    assert all(a == b == ring.primary_id for a, b in kids)
    assert rows(running.db_path, "SELECT mfa_secret_kid FROM users WHERE id=?", olena_id) == [
        (ring.primary_id,)
    ]
    assert {r[0] for r in rows(running.db_path, "SELECT private_kid FROM jwt_signing_keys")} == {
        ring.primary_id
    }
    # Nothing lost: every ciphertext, of every kind, decrypts (with the AAD its writer
    # uses, from security/aad.py) to what it was.
    running.settings.__dict__.pop("secrets", None)  # re-read the ring from the file
    for uid, tokens in before.items():
        assert stored_tokens(running, uid) == tokens
    assert _read_mfa(running, ring, olena_id, "secret") == mfa_secret
    assert _read_mfa(running, ring, alex_id, "pending") == pending
    assert jwt_keys and _jwt_private_keys(running, ring) == jwt_keys
    # Every kind the rotation handles was present, and now sits on the new key.
    for col in rotation.COLUMNS:
        if col.aad is None:
            continue
        table, kid = col.model.__tablename__, col.kid
        sql = f"SELECT DISTINCT {kid} FROM {table} WHERE {kid} IS NOT NULL"  # noqa: S608
        assert rows(running.db_path, sql) == [(ring.primary_id,)], col.label

    again = cli(running, "keys", "rotate")  # resumable / idempotent: nothing left to move
    assert "moved 0 ciphertexts" in again.stdout
    status = cli(running, "keys", "status")
    assert f"can be removed from TOKEN_ENCRYPTION_KEYS: {old_kid}" in status.stdout
    assert verify(running).ok


def _jwt_private_keys(app: RunningApp, ring: KeyRing) -> dict[str, str]:
    return {
        kid: ring.decrypt(Sealed(private_kid, private_ct), aad=jwt_key_aad(kid))
        for kid, private_kid, private_ct in rows(
            app.db_path, "SELECT kid, private_kid, private_ct FROM jwt_signing_keys"
        )
    }


def _read_mfa(app: RunningApp, ring: KeyRing, user_id: str, which: str) -> str:
    kid, ct = rows(
        app.db_path,
        f"SELECT mfa_{which}_kid, mfa_{which}_ct FROM users WHERE id=?",  # noqa: S608
        user_id,
    )[0]
    return ring.decrypt(Sealed(kid, ct), aad=mfa_secret_aad(user_id))


def test_reencrypt_in_small_batches_is_resumable(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    for who in ("alex", "olena", "noemail"):
        sign_in(running, SANDBOX_USERS[who])
    spec = secrets_file(running)["TOKEN_ENCRYPTION_KEYS"]
    new = KeyRing(f"{_new_spec()},{spec}")

    async def partial_then_rest() -> tuple[int, int]:
        svc = Services.build(running.settings)
        try:
            first = await rotation.reencrypt(svc.db, new, batch=1)
            second = await rotation.reencrypt(svc.db, new, batch=1)
            return sum(first.moved.values()), sum(second.moved.values())
        finally:
            await svc.aclose()

    moved, left = asyncio.run(partial_then_rest())
    assert moved >= 6 and left == 0


def _new_spec() -> str:
    from upwork_assistant.config import new_encryption_key_spec

    return new_encryption_key_spec()


def test_serve_refuses_when_a_used_key_left_the_ring(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    sign_in(running, SANDBOX_USERS["alex"])
    path = running.settings.data_dir / "secrets.json"
    stored = json.loads(path.read_text())
    stored["TOKEN_ENCRYPTION_KEYS"] = _new_spec()  # the old key is gone
    path.write_text(json.dumps(stored))
    result = cli(running, "serve", "--port", "1")
    assert result.returncode == 2
    assert "missing from TOKEN_ENCRYPTION_KEYS" in result.stderr


def test_jwt_key_rotation_keeps_old_tokens_valid(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    old_token = browser.client.cookies["access_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    result = cli(running, "keys", "rotate-jwt")
    assert result.returncode == 0, result.stderr
    time.sleep(2.1)  # the server reloads keys at most every 2 s on an unknown kid

    # A token signed by the new key (another instance) is accepted at once.
    async def token_from_new_key() -> str:
        svc = Services.build(running.settings)
        try:
            await svc.jwt_keys.load()
            me = browser.get("/api/auth/me", headers=JSON).json()
            sid = rows(running.db_path, "SELECT id FROM sessions")[0][0]
            return svc.jwt.issue(me["id"], sid)[0]
        finally:
            await svc.aclose()

    new_token = asyncio.run(token_from_new_key())
    assert jwt.get_unverified_header(new_token)["kid"] != old_kid
    for token in (new_token, old_token):
        r = httpx.get(f"{running.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    kids = {k["kid"] for k in httpx.get(f"{running.url}/.well-known/jwks.json").json()["keys"]}
    assert old_kid in kids and len(kids) == 2
    # New sign-ins on this server now use the new key.
    fresh, _ = sign_in(running, SANDBOX_USERS["olena"])
    assert jwt.get_unverified_header(fresh.client.cookies["access_token"])["kid"] != old_kid
    assert sync(fresh).status_code == 200


def test_unknown_kid_is_refused(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    browser, _ = sign_in(running, SANDBOX_USERS["alex"])
    token = browser.client.cookies["access_token"]
    _header, payload, sig = token.split(".")
    forged_header = jwt.utils.base64url_encode(
        json.dumps({"alg": "EdDSA", "kid": "unknown", "typ": "JWT"}).encode()
    ).decode()
    r = httpx.get(
        f"{running.url}/api/auth/me",
        headers={"Authorization": f"Bearer {forged_header}.{payload}.{sig}"},
    )
    assert r.status_code == 401


# ----- issue 13, item 4: one unreadable ciphertext stops nothing -------------------------


def _damage_tokens(app: RunningApp, user_id: str) -> None:
    rows(
        app.db_path,
        "UPDATE upwork_connections SET refresh_token_ct=? WHERE user_id=?",
        b"damaged",
        user_id,
    )


def test_worker_carries_on_past_an_unreadable_row(running: RunningApp) -> None:
    from .upwork_helpers import connection_row, sign_in, sqlite_time

    _, alex_id = sign_in(running, SANDBOX_USERS["alex"])
    _, olena_id = sign_in(running, SANDBOX_USERS["olena"])
    _damage_tokens(running, alex_id)
    soon = sqlite_time(datetime.now(UTC) + timedelta(hours=1))  # due for the keep-alive
    rows(running.db_path, "UPDATE upwork_connections SET refresh_expires_at=?", soon)
    result = cli(running, "worker", "--once")
    assert result.returncode == 0, result.stderr
    assert "renewed 1 connections" in result.stdout
    assert connection_row(running.db_path, olena_id)["last_refresh_at"] is not None
    assert connection_row(running.db_path, alex_id)["status"] == "needs_reauth"
    assert rows(running.db_path, "SELECT count(*) FROM audit_checkpoints")[0][0] == 1
    reasons = [
        json.loads(r[0])["reason"]
        for r in rows(
            running.db_path,
            "SELECT details FROM audit_events WHERE event_type='upwork.reauth_required'",
        )
    ]
    assert reasons == ["token_unreadable"]


def test_worker_refuses_when_a_used_key_left_the_ring(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    sign_in(running, SANDBOX_USERS["alex"])
    path = running.settings.data_dir / "secrets.json"
    stored = json.loads(path.read_text())
    stored["TOKEN_ENCRYPTION_KEYS"] = _new_spec()
    path.write_text(json.dumps(stored))
    result = cli(running, "worker", "--once")
    assert result.returncode == 2
    assert "missing from TOKEN_ENCRYPTION_KEYS" in result.stderr


def test_rotate_skips_and_reports_an_unreadable_row(running: RunningApp) -> None:
    from .upwork_helpers import sign_in

    _, alex_id = sign_in(running, SANDBOX_USERS["alex"])
    _, olena_id = sign_in(running, SANDBOX_USERS["olena"])
    _damage_tokens(running, alex_id)
    result = cli(running, "keys", "rotate", "--add-key")
    assert result.returncode == 1
    reported = f"UNREADABLE, left as it is: upwork_connections.refresh_token_ct of {alex_id}"
    assert reported in result.stdout
    # The others moved to the new primary key and still read.
    ring = KeyRing(secrets_file(running)["TOKEN_ENCRYPTION_KEYS"])
    kid, ct = rows(
        running.db_path,
        "SELECT refresh_token_kid, refresh_token_ct FROM upwork_connections WHERE user_id=?",
        olena_id,
    )[0]
    assert kid == ring.primary_id
    assert ring.decrypt(Sealed(kid, ct), aad=upwork_token_aad(olena_id, "refresh"))
