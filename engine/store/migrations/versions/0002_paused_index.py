"""A partial index on ended pauses, read with every claim.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_enrollment_paused", ["paused_until"], unique=False,
            sqlite_where=sa.text("state = 'paused'"),
            postgresql_where=sa.text("state = 'paused'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_enrollment_paused",
            sqlite_where=sa.text("state = 'paused'"),
            postgresql_where=sa.text("state = 'paused'"),
        )
