"""Sessions keep no refresh token: drop the encrypted grace pairs earlier versions stored.

From this version on a rotated refresh token is an HMAC of its predecessor (recomputed for
a retry within the grace window) and the grace window is bound to the session's binding
cookie, an HMAC of the session id: neither needs a column. What the old code left in
``grace_kid``/``grace_ct`` (the live pair, encrypted with the key ring) is deleted, so a
database dump plus the key ring yields no usable refresh token. The columns stay (always
NULL now) so that a downgrade needs nothing back.

The audit chain's head row is created here too (it was made lazily by the first chained
record, and two first records racing on PostgreSQL both tried to insert it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE sessions SET grace_kid = NULL, grace_ct = NULL "
        "WHERE grace_kid IS NOT NULL OR grace_ct IS NOT NULL"
    )
    # As the lazy path in security/audit.py does: records from before the chain keep
    # their ids; the chain starts after the newest.
    op.execute(
        "INSERT INTO audit_chain_head (id, last_event_id, last_hash) "
        "SELECT 1, (SELECT COALESCE(MAX(id), 0) FROM audit_events), '" + "0" * 64 + "' "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_chain_head)"
    )


def downgrade() -> None:
    # Nothing to restore: the deleted pairs were only ever a convenience for retries.
    pass
