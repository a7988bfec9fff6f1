"""credentials and push channels

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('credentials',
    sa.Column('account', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account', 'subject', name=op.f('pk_credentials'))
    )
    op.create_table('push_channels',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=500), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['link_id'], ['calendar_links.id'], name=op.f('fk_push_channels_link_id_calendar_links'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_channels'))
    )
    with op.batch_alter_table('push_channels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_channels_link_id'), ['link_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('push_channels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_channels_link_id'))
    op.drop_table('push_channels')
    op.drop_table('credentials')
