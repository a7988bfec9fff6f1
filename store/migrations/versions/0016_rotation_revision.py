"""a revision per rotation, moved by triggers on any change to its seats or assignments

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# What the choice of a rotation's next member is read from, besides the rotation's own row.
TABLES = ('rotation_seats', 'assignments')


def upgrade() -> None:
    with op.batch_alter_table('rotations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), server_default='0', nullable=False))
    # Triggers rather than the code that writes: a seat also goes when its user is deleted (a
    # cascade), and a write path added later cannot forget to move the revision.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
            CREATE OR REPLACE FUNCTION syncd_rotation_revision() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    UPDATE rotations SET revision = revision + 1 WHERE id = OLD.rotation_id;
                ELSE
                    UPDATE rotations SET revision = revision + 1 WHERE id = NEW.rotation_id;
                END IF;
                RETURN NULL;
            END
            $$""")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER syncd_rotation_revision AFTER INSERT OR UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION syncd_rotation_revision()")
        return
    for table in TABLES:
        for action, row in (('INSERT', 'NEW'), ('UPDATE', 'NEW'), ('DELETE', 'OLD')):
            op.execute(f"CREATE TRIGGER syncd_revision_{table}_{action.lower()} AFTER {action} ON {table} "
                       f"BEGIN UPDATE rotations SET revision = revision + 1 WHERE id = {row}.rotation_id; END")


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
