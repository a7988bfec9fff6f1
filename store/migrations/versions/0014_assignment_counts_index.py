"""an index for a rotation's counts per member, so that they are read from the index alone

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.create_index('ix_assignments_rotation_user_time', ['rotation_id', 'user_id', 'created_at'],
                              unique=False)


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
