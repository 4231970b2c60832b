"""`upwork-assistant upwork check` against the sandbox in each of its modes: the report must
say what the sandbox does. The command runs as a real process; the test plays the operator
in the browser (consent over HTTP) and the callback reaches the command's own listener."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from upwork_assistant.config import CALLBACK_PATH, Settings
from upwork_assistant.upwork.check import _sign_in
from upwork_assistant.upwork.oauth import UpworkOAuthClient

from .fixtures import SANDBOX_USERS, StandaloneSandbox, drop_database, fresh_database
from .helpers import parse_consent
from .test_cli import CLI, clean_env, free_port


@dataclass
class CheckRun:
    code: int
    report: dict[str, Any]
    stderr: str
    stdout: str


@dataclass
class Checker:
    sandbox: StandaloneSandbox
    run: Callable[..., CheckRun]


def _operator(stderr: queue.Queue[str], seen: list[str], decision: str = "allow") -> None:
    """Waits for each authorize URL the command prints and answers it like a person."""
    while True:
        line = stderr.get(timeout=60)
        seen.append(line)
        if line.startswith("AUTHORIZE_URL "):
            url = line.split(" ", 1)[1].strip()
            with httpx.Client(timeout=30) as browser:
                page = browser.get(url)
                if page.status_code == 302:  # refused at once (e.g. PKCE): straight back
                    browser.get(page.headers["location"])
                    continue
                consent = parse_consent(page.text)
                r = browser.post(
                    str(httpx.URL(url).join(consent.action)),
                    data={
                        "consent_id": consent.consent_id,
                        "user_id": SANDBOX_USERS["olena"],
                        "decision": decision,
                    },
                )
                if r.status_code == 302:
                    browser.get(r.headers["location"])
        if line == "":
            return


@pytest.fixture
def checker(
    tmp_path: Path,
    migrated_template: Path | str,
    sandbox_factory: Callable[..., StandaloneSandbox],
) -> Iterator[Checker]:
    redirect = f"http://127.0.0.1:{free_port()}/api/auth/upwork/callback"
    sb = sandbox_factory([redirect])
    db = fresh_database(migrated_template, tmp_path)
    env = clean_env(
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=db.url,
        UPWORK_CLIENT_ID=sb.client_id,
        UPWORK_CLIENT_SECRET=sb.client_secret,
        UPWORK_REDIRECT_URI=redirect,
        UPWORK_AUTHORIZE_URL=f"{sb.url}/ab/account-security/oauth2/authorize",
        UPWORK_TOKEN_URL=f"{sb.url}/api/v3/oauth2/token",
        UPWORK_GRAPHQL_URL=f"{sb.url}/graphql",
        APP_BASE_URL="http://127.0.0.1:8000",
    )

    def run(*args: str, decision: str = "allow", as_json: bool = True) -> CheckRun:
        proc = subprocess.Popen(
            [CLI, "upwork", "check", *(["--json"] if as_json else []), "--timeout", "30", *args],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stderr is not None and proc.stdout is not None

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line.rstrip("\n"))
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        operator = threading.Thread(target=_operator, args=(lines, seen, decision), daemon=True)
        operator.start()
        out = proc.stdout.read()
        code = proc.wait(60)
        operator.join(10)
        return CheckRun(code, json.loads(out) if as_json else {}, "\n".join(seen), out)

    yield Checker(sb, run)
    drop_database(db)


def test_check_against_the_strict_default(checker: Checker) -> None:
    result = checker.run()
    report = result.report
    assert result.code == 1  # the endpoints are plain http here: reported as problems
    assert report["callback_url"].endswith("/api/auth/upwork/callback")
    assert all(e["reachable"] for e in report["endpoints"].values())
    assert {p for p in report["problems"]} == {
        "authorize endpoint is not https",
        "token endpoint is not https",
        "graphql endpoint is not https",
    }
    assert report["pkce"] == "accepted"
    assert report["tokens"]["expires_in"] == "86400 (number)"
    assert report["tokens"]["refresh_token"] is True
    scopes = report["scopes"]
    fields = scopes["fields"]
    assert fields["CurrentUser.id"] is True and fields["CurrentUser.email"] is False
    assert "CurrentUser.email" in scopes["refused"] and "Organization.id" in scopes["refused"]
    assert scopes["features_missing"] == ["email", "freelancer_profile", "organization"]
    # A freshly approved key reaches the freelancer profile neither way.
    assert report["freelancer_profile"] == {
        "user.freelancerProfile": "refused",
        "freelancerProfileByProfileKey": "refused",
        "parts_missing": ["freelancer_profile"],
    }
    assert "permissions/scopes" in scopes["upwork_message"]
    refresh = report["refresh"]
    assert refresh["body_credentials"] == "accepted" and refresh["rotates"] is True
    assert refresh["old_refresh_token_after_rotation"] == "accepted"
    assert refresh["basic_credentials"].startswith("refused")
    assert "Missing parameters: client_id" in refresh["basic_credentials"]
    assert report["bad_token"]["answer"] == "401"
    # Nothing secret reaches the output: no token of any kind from the sandbox.
    tokens = list(checker.sandbox.state.access_tokens) + list(checker.sandbox.state.refresh_tokens)
    everything = json.dumps(report) + result.stderr
    assert tokens and not any(t in everything for t in tokens)


def test_check_against_the_kinder_modes(checker: Checker) -> None:
    checker.sandbox.faults(
        scopes=["all"],
        auth_error_status=200,
        old_refresh_grace=0,
        refresh_basic_auth=True,
        expires_in_as_string=True,
    )
    report = checker.run().report
    assert report["scopes"]["refused"] == [] and report["scopes"]["features_missing"] == []
    assert report["scopes"]["organization_type"] == "Vendor"
    assert report["freelancer_profile"] == {
        "user.freelancerProfile": "present",
        "freelancerProfileByProfileKey": "present",
        "parts_missing": [],
    }
    assert report["tokens"]["expires_in"] == "86400 (string)"
    assert report["refresh"]["old_refresh_token_after_rotation"].startswith("refused")
    assert report["refresh"]["basic_credentials"] == "accepted"
    assert report["bad_token"]["answer"] == "200 with an authentication error"


def test_check_without_rotation(checker: Checker) -> None:
    checker.sandbox.faults(rotate_refresh_token=False)
    report = checker.run().report
    assert report["refresh"]["rotates"] is False
    assert "old_refresh_token_after_rotation" not in report["refresh"]


def test_check_when_pkce_is_refused(checker: Checker) -> None:
    checker.sandbox.faults(pkce="reject")
    result = checker.run()
    assert result.report["pkce"] == "rejected"
    assert result.report["sign_in"] == {"ok": True, "pkce_sent": False}
    assert result.stderr.count("AUTHORIZE_URL ") == 2  # asked once more, without PKCE


def test_check_when_the_identity_is_out_of_scope(checker: Checker) -> None:
    checker.sandbox.faults(scopes=["user-email"])
    result = checker.run()
    assert result.code == 1
    assert "CurrentUser.id" in result.report["scopes"]["refused"]
    assert any("identity" in p for p in result.report["problems"])


def test_check_reports_a_deny(checker: Checker) -> None:
    result = checker.run(decision="deny")
    assert result.code == 1
    assert result.report["sign_in"]["error"] == "access_denied"
    assert any("denied" in p for p in result.report["problems"])


def test_check_for_a_person(checker: Checker) -> None:
    result = checker.run(as_json=False)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Callback URL to register: http://127.0.0.1:")
    assert "  granted  CurrentUser.id" in lines and "  REFUSED  CurrentUser.email" in lines
    assert "PKCE: accepted" in lines
    assert "Freelancer profile: under user refused, by profile key refused" in lines
    assert "An invalid access token gets: 401" in lines
    assert "PROBLEM: token endpoint is not https" in lines


def test_check_refuses_sandbox_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLI, "upwork", "check"],
        env=clean_env(DATA_DIR=str(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "UPWORK_CLIENT_ID" in done.stderr


def test_check_when_no_callback_comes(checker: Checker) -> None:
    checker.sandbox.faults(deny_redirect=False)  # Deny keeps the browser on "Upwork"
    result = checker.run("--timeout", "3", decision="deny")
    assert result.code == 1
    assert any("no callback arrived" in p for p in result.report["problems"])


async def test_the_callback_is_listened_for_before_the_authorize_url_is_shown(
    tmp_path: Path,
) -> None:
    """A browser quick to click Allow (the operator above, on a busy host) found nobody
    listening: the command showed the URL first and opened its listener after."""
    port = free_port()
    settings = Settings(
        app_base_url=f"http://127.0.0.1:{port}", data_dir=tmp_path, sandbox_mode=True
    )
    oauth = UpworkOAuthClient(settings, httpx.AsyncHTTPTransport())
    shown: list[str] = []

    def say(line: str) -> None:
        shown.append(line)
        if line.startswith("AUTHORIZE_URL "):
            # The quickest browser there is: back on the redirect URI the moment it's shown.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as browser:
                browser.sendall(f"GET {CALLBACK_PATH}?code=c&state=s HTTP/1.1\r\n\r\n".encode())

    query, _state, _verifier = await _sign_in(oauth, settings, 5, say)
    assert query == {"code": ["c"], "state": ["s"]}
    assert shown[-1].startswith("Waiting for the callback on http://127.0.0.1:")
