"""Outbox delivery: every status change to every sink, in order per user, at least once.

The outbox rows are written by `syncd.status` in the transaction that changed the status.
Here each sink's pending deliveries are sent oldest first; a user whose oldest pending
delivery is waiting for a retry holds back that user's later ones (order per user), but not
other users'. A delivery still failing after ``dead_letter_after`` becomes ``dead`` — kept,
reported by ``syncd status`` — and the user's queue moves on.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, aliased

from store.db import Database
from store.models import DeliveryRow, OutboxRow
from syncd.errors import RateLimited, SyncdError
from syncd.sinks import Sink, retry_delay

__all__ = ["DeliveryReport", "Publisher"]

log = logging.getLogger("syncd.publisher")

# Deliveries are recorded after every this many users' events: a crash re-sends at most these.
MARK_EVERY = 500


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0

    def __iadd__(self, other: DeliveryReport) -> DeliveryReport:
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead
        return self


@dataclass
class _Due:
    seq: int
    sink: str
    user_id: str
    attempts: int
    created_at: datetime
    payload: dict[str, Any]


class Publisher:
    def __init__(self, db: Database, sinks: Mapping[str, Sink], *, dead_letter_after: timedelta,
                 clock: Callable[[], datetime], rng: random.Random | None = None, batch: int = 5000) -> None:
        self.db = db
        self.sinks = dict(sinks)
        self.dead_letter_after = dead_letter_after
        self.clock = clock
        self.rng = rng or random.Random()
        self.batch = batch
        # sink -> (last error, events failing): one line when an episode starts, one when it ends
        self._failing: dict[str, tuple[str, set[int]]] = {}
        self._pass = threading.Lock()
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="syncd-publisher-record")

    def deliver_due(self) -> DeliveryReport:
        # One pass at a time in this process: the status timer and the delivery job both call
        # this, and two passes reading the same pending rows would send each event twice.
        with self._pass:
            report = DeliveryReport()
            for name, sink in self.sinks.items():
                # On PostgreSQL one replica at a time delivers a sink: events go out once, and in
                # order per user. The others skip the sink for this pass.
                with self.db.claim(f"sink:{name}") as ours:
                    if ours:
                        report += self._deliver_sink(name, sink)
            return report

    def drain(self, rounds: int = 20) -> DeliveryReport:
        """Deliver until nothing more is due now (used by `syncd sync --once`)."""
        total = DeliveryReport()
        for _ in range(rounds):
            report = self.deliver_due()
            total += report
            if report.delivered == 0 and report.dead == 0:  # a dead letter lets that user's next one go
                break
        return total

    def _deliver_sink(self, name: str, sink: Sink) -> DeliveryReport:
        report = DeliveryReport()
        while True:  # a burst (thousands of blocks ending at once) is sent in one pass
            due = self.db.run(lambda s: self._due(s, name), what=f"outbox for sink {name}")
            if sink.concurrency > 1:
                # Each user's events go one after another; different users' go side by side.
                # What was sent is recorded on another thread while the next users' events go
                # out, and all of it before the outbox is read again.
                recording: list[Future[DeliveryReport]] = []
                queues: dict[str, list[_Due]] = {}
                for item in due:
                    queues.setdefault(item.user_id, []).append(item)
                users = list(queues.values())
                for start in range(0, len(users), MARK_EVERY):
                    chunk = users[start:start + MARK_EVERY]
                    outcomes: list[tuple[_Due, SyncdError | None]] = []
                    sent = sink.deliver_all([[item.payload for item in queue] for queue in chunk])
                    for queue, (count, failure) in zip(chunk, sent, strict=True):
                        outcomes += [(item, None) for item in queue[:count]]
                        if failure is not None:
                            outcomes.append((queue[count], failure))
                    recording.append(self._recorder.submit(self._record, name, outcomes))
                for done in recording:
                    report += done.result()
            else:  # one at a time, in outbox order
                held: set[str] = set()
                for start in range(0, len(due), MARK_EVERY):
                    report += self._record(name, _send(sink, due[start:start + MARK_EVERY], held))
            if len(due) < self.batch or not report.delivered:
                return report

    def _record(self, name: str, outcomes: list[tuple[_Due, SyncdError | None]]) -> DeliveryReport:
        """Record what was sent in one transaction, and each failure with its retry time."""
        report = DeliveryReport()
        delivered = [item for item, failure in outcomes if failure is None]
        if delivered:
            self.db.run(lambda s: self._mark_delivered(s, name, delivered), what=f"outbox for sink {name}")
            report.delivered += len(delivered)
            episode = self._failing.get(name)
            if episode is not None:
                episode[1].difference_update(item.seq for item in delivered)
                if not episode[1]:
                    log.info("sink %s: delivering again", name)
                    del self._failing[name]
        for item, failure in outcomes:
            if failure is not None:
                report += self._failed(name, item, failure)
        return report

    def _mark_delivered(self, session: Session, sink: str, items: list[_Due]) -> None:
        now = self.clock()
        if self.db.dialect == "postgresql":
            # Losing this to a database crash only sends these events again (at least once),
            # and waiting for the disk here would halve the delivery rate in a burst.
            session.execute(text("SET LOCAL synchronous_commit = off"))
        for start in range(0, len(items), 1000):
            seqs = [item.seq for item in items[start:start + 1000]]
            session.execute(update(DeliveryRow).where(DeliveryRow.sink == sink, DeliveryRow.outbox_seq.in_(seqs))
                            .values(state="delivered", attempts=DeliveryRow.attempts + 1, last_error=None,
                                    delivered_at=now))

    def _due(self, session: Session, sink: str) -> list[_Due]:
        """Pending deliveries due now, in outbox order. A user whose head is waiting for a retry is
        skipped whole (order per user); a staged event not yet due holds nothing back, being
        its user's latest."""
        now = self.clock()
        # Users waiting for a retry are left out in the query, not after it: otherwise one user's
        # backlog could fill the whole batch and hold back everybody else.
        later = aliased(DeliveryRow)
        waiting_users = select(later.user_id).where(later.sink == sink, later.state == "pending",
                                                    later.next_attempt_at > now, later.attempts > 0)
        rows = session.execute(
            select(DeliveryRow.outbox_seq, DeliveryRow.user_id, DeliveryRow.attempts, DeliveryRow.created_at,
                   OutboxRow.payload).join(OutboxRow, OutboxRow.seq == DeliveryRow.outbox_seq)
            .where(DeliveryRow.sink == sink, DeliveryRow.state == "pending", DeliveryRow.next_attempt_at <= now,
                   DeliveryRow.user_id.not_in(waiting_users))
            .order_by(DeliveryRow.outbox_seq).limit(self.batch)
        ).all()
        return [_Due(seq, sink, user_id, attempts, created_at, payload)
                for seq, user_id, attempts, created_at, payload in rows]

    def _mark(self, session: Session, item: _Due, state: str, error: str | None = None,
              next_attempt: datetime | None = None) -> None:
        row = session.get(DeliveryRow, (item.seq, item.sink))
        if row is None:
            return
        row.attempts += 1
        row.state = state
        row.last_error = error
        if state == "delivered":
            row.delivered_at = self.clock()
        if next_attempt is not None:
            row.next_attempt_at = next_attempt

    def _failed(self, name: str, item: _Due, exc: SyncdError) -> DeliveryReport:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        now = self.clock()
        last, failing = self._failing.get(name, ("", set()))
        if last != message:
            log.warning("sink %s: delivery failed: %s", name, message)
        failing.add(item.seq)
        self._failing[name] = (message, failing)
        if now - item.created_at >= self.dead_letter_after:
            failing.discard(item.seq)
            log.error("sink %s: event %s for %s dead-lettered after %d attempts: %s",
                      name, item.payload.get("id"), item.user_id, item.attempts + 1, message)
            self.db.run(lambda s: self._mark(s, item, "dead", message))
            return DeliveryReport(dead=1)
        delay = retry_delay(item.attempts + 1, base=1.0, cap=300.0, rng=self.rng)
        if isinstance(exc, RateLimited) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        self.db.run(lambda s: self._mark(s, item, "pending", message, now + timedelta(seconds=delay)))
        return DeliveryReport(failed=1)

    def close(self) -> None:
        self._recorder.shutdown(wait=True)
        for sink in self.sinks.values():
            sink.close()


def _send(sink: Sink, items: list[_Due], held: set[str] | None = None) -> list[tuple[_Due, SyncdError | None]]:
    """Send events in order. A user whose event fails (now, or earlier in ``held``) gets no
    more this pass: their later events wait behind it (order per user)."""
    outcomes: list[tuple[_Due, SyncdError | None]] = []
    held = set() if held is None else held
    for item in items:
        if item.user_id in held:
            continue
        try:
            sink.deliver(item.payload)
        except SyncdError as exc:
            held.add(item.user_id)
            outcomes.append((item, exc))
            continue
        outcomes.append((item, None))
    return outcomes
