"""token refresh lease and profile syncs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:40:02.784771
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_syncs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_profile_syncs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_syncs")),
    )
    with op.batch_alter_table("profile_syncs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_profile_syncs_user_started", ["user_id", "started_at"], unique=False
        )

    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organization_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("last_refresh_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("refresh_lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("refresh_lease_until", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sync_claimed_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("sync_claimed_until")

    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.drop_column("refresh_lease_until")
        batch_op.drop_column("refresh_lease_owner")
        batch_op.drop_column("last_refresh_at")
        batch_op.drop_column("organization_id")

    with op.batch_alter_table("profile_syncs", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_syncs_user_started")

    op.drop_table("profile_syncs")
