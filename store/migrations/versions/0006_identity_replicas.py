"""an email is one user's; refresh tokens keyed by user id; replicas and the config they run

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sa.String(length=320), nullable=True))
    op.execute("UPDATE users SET email_key = lower(email)")
    clash = op.get_bind().execute(sa.text(
        "SELECT email_key FROM users GROUP BY email_key HAVING count(*) > 1 ORDER BY email_key")).scalars().all()
    if clash:
        raise RuntimeError("these emails belong to more than one user, and an email must be one user's: "
                           f"{', '.join(clash[:10])}; change or delete those users, then start syncd again")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email_key', existing_type=sa.String(length=320), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_users_email_key'), ['email_key'])

    # Refresh tokens were kept by email; they are kept by user id now (tokens of no user are dropped).
    op.create_table('credentials_by_user',
    sa.Column('account', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_credentials_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account', 'user_id', name=op.f('pk_credentials_by_user'))
    )
    op.execute("INSERT INTO credentials_by_user (account, user_id, kind, ciphertext, updated_at) "
               "SELECT c.account, u.id, c.kind, c.ciphertext, c.updated_at FROM credentials c "
               "JOIN users u ON u.email_key = lower(c.subject)")
    op.drop_table('credentials')
    op.rename_table('credentials_by_user', 'credentials')
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_constraint('pk_credentials_by_user', type_='primary')
        batch_op.create_primary_key('pk_credentials', ['account', 'user_id'])

    op.create_table('replicas',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_replicas'))
    )
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
