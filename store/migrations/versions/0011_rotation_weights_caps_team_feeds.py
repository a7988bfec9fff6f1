"""rotation member weights and caps, and team absence calendar feeds

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rotations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cap_window_s', sa.Integer(), nullable=True))
    with op.batch_alter_table('rotation_seats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('weight', sa.Float(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('cap', sa.Integer(), nullable=True))
    op.create_table('team_feeds',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=200), nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=False),
    sa.Column('show_titles', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_feeds_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_feeds')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_team_feeds_token_digest'))
    )
    with op.batch_alter_table('team_feeds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_feeds_team_id'), ['team_id'], unique=False)


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
