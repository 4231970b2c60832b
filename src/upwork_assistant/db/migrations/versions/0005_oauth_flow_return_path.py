"""oauth flow return path

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 04:14:30.208487
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_to", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_flows", schema=None) as batch_op:
        batch_op.drop_column("return_to")
