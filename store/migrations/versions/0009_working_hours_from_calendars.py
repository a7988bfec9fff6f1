"""working hours read from linked calendars: per link what was read, per user the choice

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('working_hours_from', sa.String(length=16), server_default='config',
                                      nullable=False))
        batch_op.add_column(sa.Column('timezone_from_calendar', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('effective_hours', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('effective_hours_zone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hours_source', sa.String(length=300), server_default='config', nullable=False))
    with op.batch_alter_table('calendar_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hours_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('hours', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('hours_zone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hours_problem', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('hours_read_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
