from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from upwork_assistant.config import (
    ConfigError,
    Settings,
    get_settings,
    new_encryption_key_spec,
    normalise_database_url,
)
from upwork_assistant.security.keys import KeyRing


def test_defaults_are_sandbox_mode(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.sandbox_mode and s.app_base_url == "http://127.0.0.1:8000"
    assert s.redirect_uri == "http://127.0.0.1:8000/api/auth/upwork/callback"
    assert s.authorize_url == (
        "http://127.0.0.1:8000/sandbox/upwork/ab/account-security/oauth2/authorize"
    )
    assert s.upwork_authorize_url == "https://www.upwork.com/ab/account-security/oauth2/authorize"
    assert s.upwork_token_url == "https://www.upwork.com/api/v3/oauth2/token"
    assert s.upwork_graphql_url == "https://api.upwork.com/graphql"
    assert s.upwork_http_timeout == 10.0
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("/upwork_assistant.db")
    assert not s.cookie_secure


def test_real_upwork_mode_uses_upwork_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPWORK_CLIENT_ID", "abc")
    monkeypatch.setenv("UPWORK_CLIENT_SECRET", "def")
    monkeypatch.setenv("APP_BASE_URL", "https://assistant.example.com/")
    s = get_settings()
    assert not s.sandbox_mode
    assert s.authorize_url == "https://www.upwork.com/ab/account-security/oauth2/authorize"
    assert s.token_url == "https://www.upwork.com/api/v3/oauth2/token"
    assert s.graphql_url == "https://api.upwork.com/graphql"
    assert s.redirect_uri == "https://assistant.example.com/api/auth/upwork/callback"
    assert s.cookie_secure


def test_redirect_uri_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPWORK_REDIRECT_URI", "https://x.example/cb")
    assert get_settings().redirect_uri == "https://x.example/cb"


@pytest.mark.parametrize("which", ["UPWORK_CLIENT_ID", "UPWORK_CLIENT_SECRET"])
def test_half_configured_credentials_refused(monkeypatch: pytest.MonkeyPatch, which: str) -> None:
    monkeypatch.setenv(which, "value")
    with pytest.raises(ConfigError, match="set both UPWORK_CLIENT_ID and UPWORK_CLIENT_SECRET"):
        get_settings()


def test_bad_base_url_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_BASE_URL", "localhost:8000")
    with pytest.raises(ConfigError, match="APP_BASE_URL"):
        get_settings()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/x.db", "sqlite+aiosqlite:///data/x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_url_forms(given: str, expected: str) -> None:
    assert normalise_database_url(given) == expected


def test_development_generates_secrets_once_with_mode_0600(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "d").secrets
    path = tmp_path / "d" / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = Settings(data_dir=tmp_path / "d").secrets
    assert first.secret_key == second.secret_key
    assert first.token_encryption_keys == second.token_encryption_keys
    assert len(first.secret_key) >= 32
    KeyRing(first.token_encryption_keys)  # a valid key ring
    assert set(json.loads(path.read_text())) == {"SECRET_KEY", "TOKEN_ENCRYPTION_KEYS"}


def test_given_secrets_win_over_generated(tmp_path: Path) -> None:
    key = "s" * 40
    assert Settings(data_dir=tmp_path, secret_key=key).secrets.secret_key == key


def test_short_secret_key_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32"):
        _ = Settings(
            data_dir=tmp_path, secret_key="short", token_encryption_keys=new_encryption_key_spec()
        ).secrets


def test_corrupt_secrets_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid secrets file"):
        _ = Settings(data_dir=tmp_path).secrets


@pytest.mark.parametrize("missing", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "UPWORK_CLIENT_ID"])
def test_production_refuses_missing_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    env = {
        "APP_ENV": "production",
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": "k" * 48,
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key_spec(),
        "UPWORK_CLIENT_ID": "id",
        "UPWORK_CLIENT_SECRET": "secret",
    }
    del env[missing]
    if missing == "UPWORK_CLIENT_ID":
        del env["UPWORK_CLIENT_SECRET"]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=f"production refuses to start.*{missing}"):
        _ = get_settings().secrets
    assert not (tmp_path / "secrets.json").exists()  # nothing generated in production


def test_production_with_everything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in production_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    assert get_settings().secrets.secret_key == "k" * 48


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "APP_ENV": "production",
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": "k" * 48,
        "TOKEN_ENCRYPTION_KEYS": new_encryption_key_spec(),
        "UPWORK_CLIENT_ID": "id",
        "UPWORK_CLIENT_SECRET": "secret",
        "APP_BASE_URL": "https://assistant.example.com",
    }
    env.update(extra)
    return {k: v for k, v in env.items() if v}


def test_production_refuses_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in production_env(tmp_path, APP_BASE_URL="http://assistant.example.com").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="http APP_BASE_URL"):
        _ = get_settings().secrets


def test_production_sandbox_only_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in production_env(tmp_path, UPWORK_CLIENT_ID="", UPWORK_CLIENT_SECRET="").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="ALLOW_SANDBOX_IN_PRODUCTION"):
        _ = get_settings().secrets
    monkeypatch.setenv("ALLOW_SANDBOX_IN_PRODUCTION", "true")
    assert get_settings().secrets.secret_key == "k" * 48


def test_production_refuses_plain_http_upwork_endpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = production_env(tmp_path, UPWORK_TOKEN_URL="http://upwork.example/token")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="UPWORK_TOKEN_URL"):
        _ = get_settings().secrets
