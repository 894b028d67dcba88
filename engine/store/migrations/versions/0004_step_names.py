"""Steps are identified by name: Enrollment.step_name, and the one-touch-per-step key on
(enrollment, step name, repetition) instead of the step's position.

An enrollment with a touch in flight (claimed, sending, an open task, in doubt) takes that
touch's step name, so the touch's outcome still advances it; the others keep '' and are
placed by their index at their next claim (then named). Touches that an edited sequence
already duplicated (the bug this fixes) keep their history: every copy after the first is
renamed `name#<touch id>`, so the new key holds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

IN_FLIGHT = "('claimed','sending','open','unknown')"


def upgrade() -> None:
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_name", sa.String(), nullable=False,
                                      server_default=""))
    op.execute(sa.text(
        "UPDATE enrollment SET step_name = (SELECT t.step_name FROM touch t"
        f" WHERE t.enrollment_id = enrollment.id AND t.state IN {IN_FLIGHT}"
        "  ORDER BY t.id DESC LIMIT 1)"
        f" WHERE EXISTS (SELECT 1 FROM touch t WHERE t.enrollment_id = enrollment.id"
        f"  AND t.state IN {IN_FLIGHT})"))
    op.execute(sa.text(
        "UPDATE touch SET step_name = step_name || '#' || CAST(id AS VARCHAR)"
        " WHERE id NOT IN (SELECT MIN(id) FROM touch"
        "  GROUP BY enrollment_id, step_name, occurrence)"))
    with op.batch_alter_table("touch", schema=None) as batch_op:
        batch_op.drop_constraint("uq_touch_step", type_="unique")
        batch_op.create_unique_constraint(
            "uq_touch_step", ["enrollment_id", "step_name", "occurrence"])


def downgrade() -> None:
    with op.batch_alter_table("touch", schema=None) as batch_op:
        batch_op.drop_constraint("uq_touch_step", type_="unique")
        batch_op.create_unique_constraint(
            "uq_touch_step", ["enrollment_id", "step_index", "occurrence"])
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.drop_column("step_name")
