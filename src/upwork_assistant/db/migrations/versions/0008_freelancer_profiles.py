"""The freelancer's Upwork profile, kept as a 24-hour content cache; the fields Upwork
answered null although its schema says they never are (kept beside the refused ones).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("null_fields", sa.JSON(), nullable=False, server_default="[]")
        )
    op.create_table(
        "freelancer_profiles",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("has_profile", sa.Boolean(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_freelancer_profiles_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_freelancer_profiles")),
    )
    op.create_index(
        op.f("ix_freelancer_profiles_fetched_at"),
        "freelancer_profiles",
        ["fetched_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_freelancer_profiles_fetched_at"), table_name="freelancer_profiles")
    op.drop_table("freelancer_profiles")
    with op.batch_alter_table("upwork_connections", schema=None) as batch_op:
        batch_op.drop_column("null_fields")
