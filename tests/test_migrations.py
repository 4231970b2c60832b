from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from upwork_assistant.db.migrate import downgrade, upgrade
from upwork_assistant.db.models import Base


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    upgrade(f"sqlite:///{db}")
    engine = create_engine(f"sqlite:///{db}")
    tables = set(inspect(engine).get_table_names())
    assert {
        "users",
        "upwork_connections",
        "sessions",
        "oauth_flows",
        "audit_events",
        "alembic_version",
    } <= tables
    downgrade(f"sqlite:///{db}", "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(f"sqlite:///{db}")
    assert "users" in inspect(engine).get_table_names()
    engine.dispose()


def test_models_match_migrations(tmp_path: Path) -> None:
    """No model change without a migration."""
    db = tmp_path / "c.db"
    upgrade(f"sqlite:///{db}")
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    upgrade(f"sqlite:///{db}")
    upgrade(f"sqlite:///{db}")


def test_upgrade_runs_outside_an_event_loop_only() -> None:
    async def inside() -> None:
        upgrade("sqlite:///:memory:")

    try:
        asyncio.run(inside())
    except RuntimeError as exc:
        assert "outside the event loop" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected a clear error inside a running loop")
