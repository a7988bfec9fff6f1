"""a change count for what a status is read from (users, user_status, ooo_blocks): notices on PostgreSQL, a counter on SQLite

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

# What a status is read from (`store.changes`, `Database.change_stamp`).
TABLES = ('users', 'user_status', 'ooo_blocks')


def upgrade() -> None:
    # The counter SQLite's triggers move; on PostgreSQL it stays at 0 (notices tell instead),
    # and exists so that both databases hold the same tables.
    changes = op.create_table('status_changes', sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
                              sa.Column('n', sa.Integer(), nullable=False), sa.PrimaryKeyConstraint('id'))
    op.bulk_insert(changes, [{'id': 1, 'n': 0}])
    if op.get_bind().dialect.name == 'postgresql':
        # Statement-level; PostgreSQL folds a transaction's identical notices into one, sent at commit.
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
        return
    # SQLite has row-level triggers only: one counter, moved in the writing transaction.
    for table in TABLES:
        for action in ('INSERT', 'UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER syncd_note_{table}_{action.lower()} AFTER {action} ON {table} "
                       "BEGIN UPDATE status_changes SET n = n + 1 WHERE id = 1; END")


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
