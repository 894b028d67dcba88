"""The initial schema: leads, enrollments, touches, suppressions, events, inbound, handoffs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

# ruff: noqa: E501 - generated table definitions read best one column per line
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('keyvalue',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('lead',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(), nullable=False),
    sa.Column('first_name', sa.String(), nullable=False),
    sa.Column('last_name', sa.String(), nullable=False),
    sa.Column('company', sa.String(), nullable=False),
    sa.Column('stage', sa.String(), nullable=False),
    sa.Column('timezone', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_email'), ['email'], unique=True)

    op.create_table('mailboxcursor',
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('last_uid', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('mailbox', 'folder')
    )
    op.create_table('suppression',
    sa.Column('email', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('email')
    )
    op.create_table('worker',
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('host', sa.String(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('enrollment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('stop_reason', sa.String(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('touch_number', sa.Integer(), nullable=False),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_touch_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.create_index('ix_enrollment_due', ['next_due_at'], unique=False, sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))
        batch_op.create_index(batch_op.f('ix_enrollment_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrollment_sequence'), ['sequence'], unique=False)
        batch_op.create_index('uq_enrollment_live', ['lead_id', 'sequence'], unique=True, sqlite_where=sa.text("state IN ('active','paused')"), postgresql_where=sa.text("state IN ('active','paused')"))

    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=True),
    sa.Column('enrollment_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_enrollment_id'), ['enrollment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_lead_id'), ['lead_id'], unique=False)

    op.create_table('inboundmessage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(), nullable=False),
    sa.Column('from_addr', sa.String(), nullable=False),
    sa.Column('subject', sa.String(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('failed_recipients', sa.String(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=True),
    sa.Column('touch_id', sa.Integer(), nullable=True),
    sa.Column('matched_by', sa.String(), nullable=False),
    sa.Column('new_text', sa.String(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_inbound_uid')
    )
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inboundmessage_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inboundmessage_message_id'), ['message_id'], unique=False)

    op.create_table('handoff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('inbound_id', sa.Integer(), nullable=True),
    sa.Column('sequence', sa.String(), nullable=False),
    sa.Column('rep', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('outcome', sa.String(), nullable=False),
    sa.Column('note', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['inbound_id'], ['inboundmessage.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('handoff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handoff_lead_id'), ['lead_id'], unique=False)

    op.create_table('touch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.String(), nullable=False),
    sa.Column('step_name', sa.String(), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('touch_number', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('task_kind', sa.String(), nullable=False),
    sa.Column('state', sa.String(), nullable=False),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('message_id', sa.String(), nullable=False),
    sa.Column('in_reply_to', sa.String(), nullable=False),
    sa.Column('references', sa.String(), nullable=False),
    sa.Column('subject', sa.String(), nullable=False),
    sa.Column('body_text', sa.String(), nullable=False),
    sa.Column('planned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fence', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('smtp_code', sa.Integer(), nullable=True),
    sa.Column('smtp_response', sa.String(), nullable=False),
    sa.Column('error', sa.String(), nullable=False),
    sa.Column('completed_by', sa.String(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollment.id'], ),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enrollment_id', 'step_index', 'occurrence', name='uq_touch_step')
    )
    with op.batch_alter_table('touch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_touch_enrollment_id'), ['enrollment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_touch_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_touch_mailbox_sent', ['mailbox', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_touch_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_touch_state_lease', ['state', 'lease_until'], unique=False)
        batch_op.create_index('ix_touch_state_retry', ['state', 'retry_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('touch', schema=None) as batch_op:
        batch_op.drop_index('ix_touch_state_retry')
        batch_op.drop_index('ix_touch_state_lease')
        batch_op.drop_index(batch_op.f('ix_touch_message_id'))
        batch_op.drop_index('ix_touch_mailbox_sent')
        batch_op.drop_index(batch_op.f('ix_touch_lead_id'))
        batch_op.drop_index(batch_op.f('ix_touch_enrollment_id'))

    op.drop_table('touch')
    with op.batch_alter_table('handoff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handoff_lead_id'))

    op.drop_table('handoff')
    with op.batch_alter_table('inboundmessage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inboundmessage_message_id'))
        batch_op.drop_index(batch_op.f('ix_inboundmessage_lead_id'))

    op.drop_table('inboundmessage')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_lead_id'))
        batch_op.drop_index(batch_op.f('ix_event_kind'))
        batch_op.drop_index(batch_op.f('ix_event_enrollment_id'))
        batch_op.drop_index(batch_op.f('ix_event_at'))

    op.drop_table('event')
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_index('uq_enrollment_live', sqlite_where=sa.text("state IN ('active','paused')"), postgresql_where=sa.text("state IN ('active','paused')"))
        batch_op.drop_index(batch_op.f('ix_enrollment_sequence'))
        batch_op.drop_index(batch_op.f('ix_enrollment_lead_id'))
        batch_op.drop_index('ix_enrollment_due', sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))

    op.drop_table('enrollment')
    op.drop_table('worker')
    op.drop_table('suppression')
    op.drop_table('mailboxcursor')
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_email'))

    op.drop_table('lead')
    op.drop_table('keyvalue')
