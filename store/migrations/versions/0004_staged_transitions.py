"""staged status transitions

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_status', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staged_for', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('staged', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('user_status', schema=None) as batch_op:
        batch_op.drop_column('staged')
        batch_op.drop_column('staged_for')
