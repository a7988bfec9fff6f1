"""one-time links with which agents connect their calendars in the browser

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connect_links',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('account', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state_digest', sa.String(length=64), nullable=True),
    sa.Column('browser_digest', sa.String(length=64), nullable=True),
    sa.Column('flow', sa.JSON(), nullable=True),
    sa.Column('flow_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_connect_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connect_links')),
    sa.UniqueConstraint('state_digest', name=op.f('uq_connect_links_state_digest'))
    )
    with op.batch_alter_table('connect_links', schema=None) as batch_op:
        batch_op.create_index('ix_connect_links_user_account', ['user_id', 'account'], unique=False)



def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
