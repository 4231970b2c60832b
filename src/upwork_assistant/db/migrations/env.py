from __future__ import annotations

import asyncio
import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from upwork_assistant.db.engine import make_engine
from upwork_assistant.db.models import Base

config = context.config
target_metadata = Base.metadata

# Run from the app (`upwork-assistant db upgrade`), logging is already the app's one JSON
# configuration (upwork_assistant.logs) and Alembic's lines go through it. Only when run
# by the `alembic` command with an ini file and no logging yet does that file set it up.
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _offline()
else:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_online())
    else:  # pragma: no cover - called from inside a running loop
        raise RuntimeError("run migrations outside the event loop (e.g. in a thread)")
