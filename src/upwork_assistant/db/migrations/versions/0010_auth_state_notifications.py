"""PostgreSQL: notify listeners when a user or a session changes, so that each serving
process's session cache (auth/session_cache.py, db/watch.py) forgets that user's rows at
the commit, whichever code, process or person made the change. SQLite needs nothing:
there the cache watches ``PRAGMA data_version``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 20:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: db/watch.py AUTH_STATE_CHANNEL (spelled out: a migration must not change with the code).
CHANNEL = "ua_auth_state"
#: table -> its column holding the user's id
WATCHED = {"users": "id", "sessions": "user_id"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in WATCHED.items():
        op.execute(
            f"""
            CREATE FUNCTION ua_notify_{table}_changed() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    PERFORM pg_notify('{CHANNEL}', OLD.{column});
                ELSE
                    PERFORM pg_notify('{CHANNEL}', NEW.{column});
                END IF;
                RETURN NULL;
            END $$
            """
        )
        # Inserts need no notice: a row nobody has read yet is in nobody's cache.
        op.execute(
            f"CREATE TRIGGER ua_{table}_auth_state AFTER UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION ua_notify_{table}_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS ua_{table}_auth_state ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS ua_notify_{table}_changed()")
