"""The upwork-assistant command, run as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from upwork_assistant.config import new_encryption_key_spec

from .helpers import Browser

CLI = str(Path(sys.executable).parent / "upwork-assistant")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UPWORK_", "APP_", "DATABASE_", "SECRET_", "TOKEN_"))
    }
    env.update(extra)
    return env


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [CLI, *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_help_lists_commands() -> None:
    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "db", "sandbox"):
        assert command in out


def test_db_upgrade_then_serve_and_sign_in(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env()  # APP_BASE_URL unset: serve derives it from --host/--port
    up = subprocess.run(
        [CLI, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "database at head" in up.stdout
    assert (tmp_path / "data" / "upwork_assistant.db").exists()
    with process(["serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path) as proc:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        browser = Browser(f"http://127.0.0.1:{port}")
        assert browser.sign_in().headers["location"] == "/"
        assert "Sign out" in browser.get("/").text
        browser.close()
    secrets = tmp_path / "data" / "secrets.json"
    assert secrets.exists() and oct(secrets.stat().st_mode & 0o777) == "0o600"


def test_serve_in_production_without_secrets_exits_clearly(tmp_path: Path) -> None:
    env = clean_env(APP_ENV="production", TOKEN_ENCRYPTION_KEYS=new_encryption_key_spec())
    r = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "production refuses to start" in r.stderr and "SECRET_KEY" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "secrets.json").exists()


def test_sandbox_mode_refuses_several_workers(tmp_path: Path) -> None:
    r = subprocess.run(
        [CLI, "serve", "--port", str(free_port()), "--workers", "2"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "one worker" in r.stderr


def test_standalone_sandbox(tmp_path: Path) -> None:
    port = free_port()
    args = [
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--client-id",
        "my-id",
        "--client-secret",
        "my-secret",
        "--redirect-uri",
        "http://127.0.0.1:1/a",
        "--redirect-uri",
        "http://127.0.0.1:1/b",
    ]
    with process(args, clean_env(), tmp_path) as proc:
        wait_for(f"http://127.0.0.1:{port}/", proc)
        base = f"http://127.0.0.1:{port}"
        for uri in ("http://127.0.0.1:1/a", "http://127.0.0.1:1/b"):
            r = httpx.get(
                f"{base}/ab/account-security/oauth2/authorize",
                params={"client_id": "my-id", "redirect_uri": uri, "response_type": "code"},
            )
            assert r.status_code == 200
        r = httpx.post(
            f"{base}/api/v3/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": "my-id",
                "client_secret": "my-secret",
            },
        )
        assert r.json()["error"] == "invalid_grant"  # authenticated, just a bad grant
    output = proc.stdout.read() if proc.stdout else ""
    assert "client id:     my-id" in output and "http://127.0.0.1:1/b" in output


def test_standalone_sandbox_defaults_printed(tmp_path: Path) -> None:
    port = free_port()
    with process(["sandbox", "--port", str(port)], clean_env(), tmp_path) as proc:
        wait_for(f"http://127.0.0.1:{port}/", proc)
    output = proc.stdout.read() if proc.stdout else ""
    assert "sandbox-client-id" in output and "sandbox-client-secret" in output
    assert "http://127.0.0.1:8000/api/auth/upwork/callback" in output
