"""Less work in every claim: the ended-pause check reads only the claimed sequences' pauses
(the paused index leads with the sequence), and a new touch no longer checks its lead_id
against the lead table (a copy of its enrollment's lead_id; the enrollment foreign key
already ties the touch to its lead). bench/due_claim.py: PostgreSQL claim of 500 among a
million enrollments about 79 -> 45 ms.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PAUSED = sa.text("state = 'paused'")
# 0001 left the touch's foreign keys unnamed: PostgreSQL named them <table>_<column>_fkey;
# on SQLite the batch copy of the table finds them by this convention.
NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    op.drop_index("ix_enrollment_paused", table_name="enrollment")
    op.create_index("ix_enrollment_paused", "enrollment", ["sequence", "paused_until"],
                    sqlite_where=PAUSED, postgresql_where=PAUSED)
    with op.batch_alter_table("touch", naming_convention=NAMES) as batch_op:
        batch_op.drop_constraint("touch_lead_id_fkey", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("touch", naming_convention=NAMES) as batch_op:
        batch_op.create_foreign_key("touch_lead_id_fkey", "lead", ["lead_id"], ["id"])
    op.drop_index("ix_enrollment_paused", table_name="enrollment")
    op.create_index("ix_enrollment_paused", "enrollment", ["paused_until"],
                    sqlite_where=PAUSED, postgresql_where=PAUSED)
