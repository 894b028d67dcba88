"""Fewer index entries per claimed touch: the enrollment_id index goes (uq_touch_step starts
with enrollment_id and serves every lookup by enrollment), and the (mailbox, sent_at) and
(state, retry_at) indexes hold only touches sent or waiting for a retry, which a new claim
is not. A claim of 500 touches then writes 5 index entries per touch instead of 8.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PARTIAL = {"ix_touch_mailbox_sent": (["mailbox", "sent_at"], "sent_at IS NOT NULL"),
           "ix_touch_state_retry": (["state", "retry_at"], "retry_at IS NOT NULL")}


def upgrade() -> None:
    op.drop_index("ix_touch_enrollment_id", table_name="touch")
    for name, (columns, where) in PARTIAL.items():
        op.drop_index(name, table_name="touch")
        op.create_index(name, "touch", columns, sqlite_where=sa.text(where),
                        postgresql_where=sa.text(where))


def downgrade() -> None:
    for name, (columns, _) in PARTIAL.items():
        op.drop_index(name, table_name="touch")
        op.create_index(name, "touch", columns)
    op.create_index("ix_touch_enrollment_id", "touch", ["enrollment_id"])
