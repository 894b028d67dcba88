"""Worker.boot_id (which pid namespace a worker lives in) and Touch.deferrals (mailbox pauses
a touch waited through, capped so no touch is deferred forever).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("boot_id", sa.String(), nullable=False,
                                      server_default=""))
    with op.batch_alter_table("touch", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deferrals", sa.Integer(), nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("touch", schema=None) as batch_op:
        batch_op.drop_column("deferrals")
    with op.batch_alter_table("worker", schema=None) as batch_op:
        batch_op.drop_column("boot_id")
