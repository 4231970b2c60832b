"""Upwork content as a 24-hour cache (fetch times, photo, profile key), refused scopes per
connection, and the shared gate for calls to Upwork.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(length=512), nullable=True)
        batch_op.add_column(sa.Column("photo_url", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("profile_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("identity_fetched_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("email_fetched_at", sa.DateTime(timezone=True), nullable=True)
        )
    # What is stored now was fetched at the last sync: that starts its 24 hours.
    op.execute(
        "UPDATE users SET identity_fetched_at = profile_synced_at, "
        "email_fetched_at = CASE WHEN email IS NULL THEN NULL ELSE profile_synced_at END"
    )
    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("missing_grants", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("grants_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
    gate = op.create_table(
        "upwork_gate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.Column("blocked_reason", sa.String(length=64), nullable=True),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("day_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upwork_gate")),
    )
    op.bulk_insert(
        gate, [{"id": 1, "next_slot": 0.0, "blocked_until": 0.0, "day": "", "day_count": 0}]
    )


def downgrade() -> None:
    op.drop_table("upwork_gate")
    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.drop_column("grants_checked_at")
        batch_op.drop_column("missing_grants")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_fetched_at")
        batch_op.drop_column("identity_fetched_at")
        batch_op.drop_column("profile_key")
        batch_op.drop_column("photo_url")
        batch_op.alter_column("name", existing_type=sa.String(length=512), nullable=False)
