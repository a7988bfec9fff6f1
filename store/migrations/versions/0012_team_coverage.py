"""a team's minimum of available members, and what syncd announced of its coverage

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('teams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_available', sa.Integer(), server_default='0', nullable=False))
    op.create_table('team_coverage',
    sa.Column('team_id', sa.String(length=200), nullable=False),
    sa.Column('below', sa.Boolean(), nullable=True),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_check_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('staged', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_coverage_team_id_teams'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', name=op.f('pk_team_coverage'))
    )
    with op.batch_alter_table('team_coverage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_coverage_next_check_at'), ['next_check_at'], unique=False)


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
