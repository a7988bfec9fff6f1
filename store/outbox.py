"""The outbox: status events waiting to go out, one delivery row per event and sink.

Entries are written in the transaction that changed the status; their sequence numbers are
the delivery order per user. A delivery is pending until sent, retried at
``next_attempt_at``, and dead after the configured age. A staged delivery (prepared ahead
of its transition) is due at the transition's instant and has never been tried.

Each sink's deliveries are split into `PARTITIONS` partitions by a hash of the user id, so
that replicas can deliver a sink side by side, each its own partitions, while each user's
events stay in one partition and so in order.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, and_, any_, delete, func, insert, select, text, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from store.models import DeliveryRow, OutboxRow

__all__ = ["PARTITIONS", "Due", "dead_count", "due", "mark", "mark_delivered", "partition_of", "queue", "staged_for",
           "still_due", "withdraw"]

_OUTBOX = cast(Table, OutboxRow.__table__)
_DELIVERIES = cast(Table, DeliveryRow.__table__)
_SEQS = ARRAY(BigInteger)  # a page of outbox seqs as one PostgreSQL parameter
# Partitions per sink: the most replicas that can share one sink's delivery. Stored in every
# pending row, so changing it needs a migration that recomputes them (as 0013 did).
PARTITIONS = 16


def partition_of(user_id: str) -> int:
    """The partition of a user's deliveries: the same in every process (CRC-32, not `hash`,
    which differs per process)."""
    return zlib.crc32(user_id.encode()) % PARTITIONS


@dataclass
class Due:
    """One delivery to make: the event, for one sink."""

    seq: int
    sink: str
    user_id: str
    attempts: int
    created_at: datetime
    payload: dict[str, Any]


def queue(session: Session, entries: Sequence[tuple[str, str, dict[str, Any], datetime]], sinks: Sequence[str],
          now: datetime) -> list[int]:
    """Outbox entries ``(event id, user id, payload, due at)`` and a delivery per sink for each;
    returns their sequence numbers, in the order given (the order they go out per user)."""
    if not entries:
        return []
    conn = session.connection()
    outbox = [{"event_id": event_id, "user_id": user_id, "created_at": now, "payload": payload}
              for event_id, user_id, payload, _at in entries]
    seqs = list(conn.execute(insert(_OUTBOX).returning(_OUTBOX.c.seq, sort_by_parameter_order=True),
                             outbox).scalars())
    deliveries = [{"outbox_seq": seq, "sink": sink, "user_id": user_id, "partition": partition_of(user_id),
                   "state": "pending", "attempts": 0, "next_attempt_at": at, "created_at": now}
                  for seq, (_e, user_id, _p, at) in zip(seqs, entries, strict=True) for sink in sinks]
    if deliveries:
        conn.execute(insert(_DELIVERIES), deliveries)
    return seqs


def withdraw(session: Session, seqs: Sequence[int]) -> None:
    """Staged events whose transition will not happen: they must not go out."""
    conn = session.connection()
    conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.outbox_seq.in_(list(seqs))))
    conn.execute(delete(_OUTBOX).where(_OUTBOX.c.seq.in_(list(seqs))))


def _dues(rows: Sequence[Any], sink: str) -> list[Due]:
    return [Due(seq, sink, user_id, attempts, created_at, payload)
            for seq, user_id, attempts, created_at, payload in rows]


_COLUMNS = (DeliveryRow.outbox_seq, DeliveryRow.user_id, DeliveryRow.attempts, DeliveryRow.created_at,
            OutboxRow.payload)


def _in(partitions: Collection[int] | None) -> tuple[Any, ...]:
    """The condition for deliveries in ``partitions`` (None: all of them)."""
    return () if partitions is None else (DeliveryRow.partition.in_(sorted(partitions)),)


def due(session: Session, sink: str, after: int, now: datetime, limit: int,
        partitions: Collection[int] | None = None) -> list[Due]:
    """Pending deliveries due now in ``partitions`` (None: all), in outbox order after
    ``after``. A user whose head is waiting for a retry is skipped whole (order per user); a
    staged event not yet due holds nothing back, being its user's latest."""
    # Users waiting for a retry are left out in the query, not after it: otherwise one user's
    # backlog could fill whole pages and hold back everybody else.
    later = aliased(DeliveryRow)
    waiting_users = select(later.user_id).where(later.sink == sink, later.state == "pending",
                                                later.next_attempt_at > now, later.attempts > 0)
    rows = session.execute(
        select(*_COLUMNS).join(OutboxRow, OutboxRow.seq == DeliveryRow.outbox_seq)
        .where(DeliveryRow.sink == sink, DeliveryRow.state == "pending", DeliveryRow.next_attempt_at <= now,
               DeliveryRow.outbox_seq > after, *_in(partitions), DeliveryRow.user_id.not_in(waiting_users))
        .order_by(DeliveryRow.outbox_seq).limit(limit)).all()
    return _dues(rows, sink)


def _staged(sink: str, at: datetime) -> tuple[Any, ...]:
    """Deliveries staged for ``at``: queued for that instant and never tried."""
    return (DeliveryRow.sink == sink, DeliveryRow.state == "pending", DeliveryRow.attempts == 0,
            DeliveryRow.next_attempt_at == at)


def staged_for(session: Session, sink: str, at: datetime, partitions: Collection[int] | None = None) -> list[Due]:
    rows = session.execute(select(*_COLUMNS).join(OutboxRow, OutboxRow.seq == DeliveryRow.outbox_seq)
                           .where(*_staged(sink, at), *_in(partitions)).order_by(DeliveryRow.outbox_seq)).all()
    return _dues(rows, sink)


def still_due(session: Session, sink: str, at: datetime, prepared: Sequence[Due],
              partitions: Collection[int] | None = None) -> list[Due]:
    """Of the events prepared for ``at``, those to send now: not withdrawn (an edit deletes
    them), not sent or tried by another replica, and not behind an earlier event of the same
    user still pending (left to the page pass, which keeps the order)."""
    # Plain queries, put together here: joined in SQL, PostgreSQL picked a nested loop while
    # its statistics did not know the burst yet (25 s for 10,000 rows).
    staged = set(session.scalars(select(DeliveryRow.outbox_seq).where(*_staged(sink, at), *_in(partitions))))
    earliest: dict[str, int] = {}
    for user_id, seq in session.execute(
            select(DeliveryRow.user_id, DeliveryRow.outbox_seq)
            .where(DeliveryRow.sink == sink, DeliveryRow.state == "pending", *_in(partitions),
                   ~(and_(*_staged(sink, at))))):
        earliest[user_id] = min(seq, earliest.get(user_id, seq))
    return [item for item in prepared if item.seq in staged and earliest.get(item.user_id, item.seq) >= item.seq]


def mark_delivered(session: Session, sink: str, seqs: Sequence[int], now: datetime) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Losing this to a database crash only sends these events again (at least once),
        # and waiting for the disk here would halve the delivery rate in a burst.
        session.execute(text("SET LOCAL synchronous_commit = off"))
        # One array parameter, not an IN list of a page's seqs: the statement is compiled once
        # and the driver has no long query to rewrite. In a burst this runs beside the sending,
        # on the same interpreter, and the IN list's cost slowed the sending to a third.
        session.execute(update(_DELIVERIES).where(_DELIVERIES.c.sink == sink,
                                                  _DELIVERIES.c.outbox_seq == any_(cast_(list(seqs), _SEQS)))
                        .values(state="delivered", attempts=_DELIVERIES.c.attempts + 1, last_error=None,
                                delivered_at=now))
        return
    for start in range(0, len(seqs), 1000):
        chunk = list(seqs[start:start + 1000])
        session.execute(update(DeliveryRow).where(DeliveryRow.sink == sink, DeliveryRow.outbox_seq.in_(chunk))
                        .values(state="delivered", attempts=DeliveryRow.attempts + 1, last_error=None,
                                delivered_at=now))


def mark(session: Session, item: Due, state: str, now: datetime, error: str | None = None,
         next_attempt: datetime | None = None) -> None:
    row = session.get(DeliveryRow, (item.seq, item.sink))
    if row is None:
        return
    row.attempts += 1
    row.state = state
    row.last_error = error
    if state == "delivered":
        row.delivered_at = now
    if next_attempt is not None:
        row.next_attempt_at = next_attempt


def dead_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.state == "dead")) or 0
