"""refresh token reuse detection and mfa

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:52:07.905596
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mfa_backup_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_mfa_backup_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_backup_codes")),
    )
    with op.batch_alter_table("mfa_backup_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mfa_backup_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_mfa_challenges_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_challenges")),
    )
    with op.batch_alter_table("mfa_challenges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mfa_challenges_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "mfa_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_mfa_failures_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_failures")),
    )
    with op.batch_alter_table("mfa_failures", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_failures_user_time", ["user_id", "created_at"], unique=False)

    op.create_table(
        "rotated_refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_rotated_refresh_tokens_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_rotated_refresh_tokens")),
    )
    with op.batch_alter_table("rotated_refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rotated_refresh_tokens_session_id"), ["session_id"], unique=False
        )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("grace_kid", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("grace_ct", sa.LargeBinary(), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mfa_secret_kid", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("mfa_secret_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("mfa_pending_kid", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("mfa_pending_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("mfa_last_step", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("mfa_enabled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("mfa_enabled_at")
        batch_op.drop_column("mfa_last_step")
        batch_op.drop_column("mfa_pending_ct")
        batch_op.drop_column("mfa_pending_kid")
        batch_op.drop_column("mfa_secret_ct")
        batch_op.drop_column("mfa_secret_kid")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("grace_ct")
        batch_op.drop_column("grace_kid")
        batch_op.drop_column("rotated_at")
        batch_op.drop_column("revoked_reason")

    with op.batch_alter_table("rotated_refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rotated_refresh_tokens_session_id"))

    op.drop_table("rotated_refresh_tokens")
    with op.batch_alter_table("mfa_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_mfa_failures_user_time")

    op.drop_table("mfa_failures")
    with op.batch_alter_table("mfa_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mfa_challenges_expires_at"))

    op.drop_table("mfa_challenges")
    with op.batch_alter_table("mfa_backup_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mfa_backup_codes_user_id"))

    op.drop_table("mfa_backup_codes")
