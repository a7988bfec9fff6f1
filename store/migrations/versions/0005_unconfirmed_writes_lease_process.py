"""events written by syncd and not yet seen in a listing; the process holding a link's lease

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unconfirmed', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('calendar_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_process', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calendar_links', schema=None) as batch_op:
        batch_op.drop_column('lease_process')
    with op.batch_alter_table('event_links', schema=None) as batch_op:
        batch_op.drop_column('unconfirmed')
