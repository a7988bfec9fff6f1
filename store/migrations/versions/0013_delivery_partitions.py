"""each delivery names its sink partition, so that replicas share a sink's delivery

Revision ID: 0013
Revises: 0012
"""

import zlib

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# As store.outbox.PARTITIONS and partition_of, repeated so that this revision never changes
# when they do (a migration is history).
PARTITIONS = 16


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partition', sa.Integer(), server_default='0', nullable=False))
    # Only deliveries still to make are ever read by partition; there are few of them (sent
    # and dead ones keep 0). Updated by primary key: user_id has no index of its own.
    deliveries = sa.table('deliveries', sa.column('outbox_seq', sa.BigInteger()), sa.column('sink', sa.String()),
                          sa.column('user_id', sa.String()), sa.column('state', sa.String()),
                          sa.column('partition', sa.Integer()))
    connection = op.get_bind()
    pending = connection.execute(sa.select(deliveries.c.outbox_seq, deliveries.c.sink, deliveries.c.user_id)
                                 .where(deliveries.c.state == 'pending')).all()
    if pending:
        connection.execute(
            deliveries.update().where(deliveries.c.outbox_seq == sa.bindparam('seq'),
                                      deliveries.c.sink == sa.bindparam('sink_name'))
            .values(partition=sa.bindparam('part')),
            [{'seq': seq, 'sink_name': sink, 'part': zlib.crc32(user_id.encode()) % PARTITIONS}
             for seq, sink, user_id in pending])


def downgrade() -> None:
    raise NotImplementedError("syncd does not migrate down; restore a backup instead")
