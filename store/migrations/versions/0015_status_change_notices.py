"""on PostgreSQL, a notice on channel syncd_changes when users, user_status or ooo_blocks change

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

# What a status is read from (`store.changes`); statement-level, and PostgreSQL folds a
# transaction's identical notices into one, sent at commit.
TABLES = ('users', 'user_status', 'ooo_blocks')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return  # SQLite tells the same by PRAGMA data_version
    op.execute("""
        CREATE OR REPLACE FUNCTION syncd_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('syncd_changes', TG_TABLE_SCHEMA);
            RETURN NULL;
        END
        $$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER syncd_note_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION syncd_note_change()")


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
