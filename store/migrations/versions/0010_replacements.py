"""replacements: a user's default, and an OOO block's own

Revision ID: 0010
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replacement', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_users_replacement'), ['replacement'], unique=False)
    with op.batch_alter_table('ooo_blocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replacement', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_ooo_blocks_replacement'), ['replacement'], unique=False)


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
