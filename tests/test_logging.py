"""Every line the real processes write goes through one logging configuration: JSON in
production (the app's, uvicorn's startup and access lines, Alembic's), readable lines in
development, and no secret of a URL in any of them."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from upwork_assistant.config import new_encryption_key_spec
from upwork_assistant.logs import LogFormat, _formatter

from .test_cli import CLI, clean_env, free_port, wait_for


def production_env(tmp_path: Path, port: int) -> dict[str, str]:
    return clean_env(
        APP_ENV="production",
        DATA_DIR=str(tmp_path / "data"),
        APP_BASE_URL=f"https://app.example.test:{port}",
        SECRET_KEY="s" * 48,
        TOKEN_ENCRYPTION_KEYS=new_encryption_key_spec(),
        UPWORK_CLIENT_ID="client-id-for-logging-test",
        UPWORK_CLIENT_SECRET="client-secret-for-logging-test",
        WORKER_IN_SERVE="false",
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each non-empty line as a JSON object with the fields every line has."""
    parsed = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise AssertionError(f"not a JSON line: {line!r}") from exc
        assert isinstance(obj, dict), line
        for key in ("timestamp", "level", "logger", "event"):
            assert key in obj, f"{key} missing from {line!r}"
        assert obj["timestamp"].endswith("Z"), line  # ISO 8601, UTC
        parsed.append(obj)
    return parsed


def test_serve_in_production_writes_only_json_lines(tmp_path: Path) -> None:
    port = free_port()
    env = production_env(tmp_path, port)
    subprocess.run(
        [CLI, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    proc = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc)
        base = f"http://127.0.0.1:{port}"
        httpx.get(f"{base}/api/auth/upwork/callback?code=SECRET123&state=x", timeout=10)
        httpx.get(f"{base}/healthz?access_token=SECRET456&keep=1", timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)  # by its pid, as Ctrl+C
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()

    assert "SECRET123" not in out + err and "SECRET456" not in out + err
    lines = json_lines(out) + json_lines(err)
    by_logger: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_logger.setdefault(line["logger"], []).append(line)

    startup = " ".join(line["event"] for line in by_logger.get("uvicorn.error", []))
    assert f"Uvicorn running on http://127.0.0.1:{port}" in startup
    assert "Application startup complete" in startup and "Shutting down" in startup
    assert any(line["event"] == "startup" for line in by_logger.get("upwork_assistant", []))

    access = by_logger.get("uvicorn.access", [])
    callback = [a for a in access if a["path"].startswith("/api/auth/upwork/callback")]
    assert len(callback) == 1, access
    (line,) = callback
    assert line["level"] == "info" and line["method"] == "GET"
    assert line["path"] == "/api/auth/upwork/callback?[redacted]"
    assert line["client_addr"].startswith("127.0.0.1:")
    assert isinstance(line["status_code"], int) and line["status_code"] >= 300
    assert "/api/auth/upwork/callback?[redacted]" in line["event"]
    health = [a for a in access if a["path"].startswith("/healthz?")]
    assert [a["path"] for a in health] == ["/healthz?access_token=[redacted]&keep=1"]
    assert health[0]["status_code"] == 200


def test_db_upgrade_in_production_logs_alembic_as_json(tmp_path: Path) -> None:
    env = production_env(tmp_path, 443)
    done = subprocess.run(
        [CLI, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "database at head"
    lines = json_lines(done.stderr)
    alembic = [line for line in lines if line["logger"].startswith("alembic")]
    assert alembic and all(line["level"] == "info" for line in alembic)
    assert any(line["event"].startswith("Running upgrade  -> 0001") for line in alembic)


def test_development_lines_are_readable(tmp_path: Path) -> None:
    env = clean_env(DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [CLI, "db", "upgrade"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "Running upgrade" in line]
    assert lines, done.stderr
    assert not lines[0].startswith("{")
    assert "[info" in lines[0] and "[alembic.runtime.migration]" in lines[0]
    assert "\x1b[" not in done.stderr  # no colours when stderr is not a terminal


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_never_shows_local_variables(fmt: LogFormat) -> None:
    """A logged exception's traceback names the frames, never their locals (structlog's
    default console renderer, with rich installed, printed every local: tokens too)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(fmt, stream))
    logger = logging.getLogger("upwork_assistant.test_traceback")
    logger.addHandler(handler)
    logger.propagate = False
    try:

        def refresh() -> None:
            access_token = "tok-" + "local-secret-in-a-frame"
            raise RuntimeError(f"refresh failed ({len(access_token)} chars)")

        try:
            refresh()
        except RuntimeError:
            logger.exception("refresh_failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "refresh_failed" in written and "RuntimeError" in written
    assert "in refresh" in written or '"refresh"' in written or "refresh()" in written
    assert "local-secret-in-a-frame" not in written


def test_a_crashing_command_never_prints_local_variables(tmp_path: Path) -> None:
    """An unexpected error in a command (here one added for the test, holding a secret in a
    local variable) prints a traceback without locals. Typer's own default printed them all
    in the older releases that pyproject's range still admits; cli.py says so explicitly."""
    script = (
        "import sys\n"
        "from upwork_assistant.cli import app, keys_app\n"
        "@keys_app.command('explode')\n"
        "def explode() -> None:\n"
        "    client_secret = 'cli-' + 'local-secret-in-a-frame'\n"
        "    raise RuntimeError(f'failed after {len(client_secret)} chars')\n"
        "sys.argv = ['upwork-assistant', 'keys', 'explode']\n"
        "app()\n"
    )
    done = subprocess.run(
        [str(Path(CLI).parent / "python"), "-c", script],
        env=clean_env(DATA_DIR=str(tmp_path / "data")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr
    assert "local-secret-in-a-frame" not in done.stderr + done.stdout
