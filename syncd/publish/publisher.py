"""Outbox delivery: every status change to every sink, in order per user, at least once.

The outbox rows are written by the status recorder in the transaction that changed the status.
Here each sink's pending deliveries are sent oldest first; a user whose oldest pending
delivery is waiting for a retry holds back that user's later ones (order per user), but not
other users'. A delivery still failing after ``dead_letter_after`` becomes ``dead`` — kept,
reported by ``syncd status`` — and the user's queue moves on.

Replicas share each sink: its outbox is split into partitions by user, and each replica
delivers the partitions it holds (`SinkPartitions`), so delivery grows with replicas and
each user's events still go out in order, from one replica at a time.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from store import outbox
from store.db import Database
from store.outbox import Due, partition_of
from syncd.core.errors import RateLimited, SyncdError
from syncd.core.text import first_line
from syncd.publish.partitions import SinkPartitions
from syncd.publish.sink import Sink, retry_delay

__all__ = ["DeliveryReport", "Publisher"]

log = logging.getLogger(__name__)

# Pending deliveries are read this many at a time, and recorded as sent page by page: a crash
# re-sends at most the pages in flight.
PAGE = 500


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


class Publisher:
    def __init__(self, db: Database, sinks: Mapping[str, Sink], *, dead_letter_after: timedelta,
                 clock: Callable[[], datetime], rng: random.Random | None = None, page: int = PAGE,
                 replicas: Callable[[], int] = lambda: 1) -> None:
        self.db = db
        self.sinks = dict(sinks)
        self.dead_letter_after = dead_letter_after
        self.clock = clock
        self.rng = rng or random.Random()
        self.page = page
        # sink -> (last error, events failing): one line when an episode starts, one when it ends
        self._failing: dict[str, tuple[str, set[int]]] = {}
        self._pass = threading.Lock()
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="syncd-publisher-record")
        # (sink, instant) -> the staged deliveries read ahead of that instant (see `prepare`)
        self._prepared: dict[tuple[str, datetime], list[Due]] = {}
        self._prepared_lock = threading.Lock()
        # On PostgreSQL, where replicas share the sinks: this replica's partitions of each, and
        # how many replicas are alive to share them (a read of their heartbeats).
        self.replicas = replicas
        self._leases = db.leases()
        self._shares = ({name: SinkPartitions(name, self._leases) for name in self.sinks}
                        if db.dialect == "postgresql" else {})
        self._share_seen: dict[str, frozenset[int]] = {}  # each sink's partitions at the last pass

    def partitions(self, name: str) -> frozenset[int] | None:
        """The partitions of sink ``name`` this replica delivers now; None: all (one process)."""
        share = self._shares.get(name)
        return None if share is None else share.mine()

    def deliver_due(self) -> DeliveryReport:
        # One pass at a time in this process: the status timer and the delivery job both call
        # this, and two passes reading the same pending rows would send each event twice.
        with self._pass:
            report = DeliveryReport()
            replicas = self.replicas() if self._shares else 1
            for name, sink in self.sinks.items():
                share = self._shares.get(name)
                partitions = None if share is None else share.balance(replicas, self.clock())
                self._forget_prepared(name, partitions)
                if partitions is None or partitions:
                    report += self._deliver_sink(name, sink, partitions)
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

    def prepare(self, at: datetime) -> int:
        """Read the events staged for ``at`` shortly before it, and let each sink encode them:
        at the instant they go out after one small query (which of them are still due) instead
        of a read of them all. Returns how many were read."""
        total = 0
        for name, sink in self.sinks.items():
            partitions = self.partitions(name)
            if partitions is not None and not partitions:
                continue
            items = self.db.run(lambda s, name=name, partitions=partitions: outbox.staged_for(  # type: ignore[misc]
                s, name, at, partitions), what=f"outbox for sink {name}")
            if items:
                sink.prepare([item.payload for item in items], at.timestamp())
                with self._prepared_lock:
                    self._prepared[(name, at)] = items
                total += len(items)
        return total

    def held_prepared(self) -> int:
        """How many prepared events are held, waiting for their instant."""
        with self._prepared_lock:
            return sum(len(items) for items in self._prepared.values())

    def _forget_prepared(self, name: str, partitions: frozenset[int] | None) -> None:
        """What was prepared here in partitions that another replica delivers now is its."""
        if partitions is None or self._share_seen.get(name) == partitions:
            return
        self._share_seen[name] = partitions
        with self._prepared_lock:
            for key in [key for key in self._prepared if key[0] == name]:
                kept = [item for item in self._prepared[key] if partition_of(item.user_id) in partitions]
                if kept:
                    self._prepared[key] = kept
                else:
                    del self._prepared[key]

    def _deliver_sink(self, name: str, sink: Sink, partitions: Collection[int] | None) -> DeliveryReport:
        """One pass: first the events prepared for an instant that has come, then what is due, a
        page at a time in outbox order. What was sent is recorded on another thread while the
        next page is read and sent, and all of it before the pass ends. A user whose event
        failed in this pass gets no more in it (order per user)."""
        held: set[str] = set()
        report = DeliveryReport()
        now = self.clock()
        with self._prepared_lock:
            ready = [(at, self._prepared.pop((sink_name, at))) for sink_name, at in list(self._prepared)
                     if sink_name == name and at <= now]
        for at, prepared in ready:
            items = self.db.run(lambda s, at=at, prepared=prepared: outbox.still_due(  # type: ignore[misc]
                s, name, at, prepared, partitions), what=f"outbox for sink {name}")
            recording: list[Future[DeliveryReport]] = []
            for start in range(0, len(items), self.page):
                outcomes = _send_page(sink, items[start:start + self.page], held)
                recording.append(self._recorder.submit(self._record, name, outcomes))
            # Recorded before the outbox is read below, which would otherwise find them pending.
            for done in recording:
                report += done.result()
        recording = []
        after = 0
        while True:
            page = self.db.run(lambda s, after=after: outbox.due(  # type: ignore[misc]
                s, name, after, self.clock(), self.page, partitions), what=f"outbox for sink {name}")
            if page:
                recording.append(self._recorder.submit(self._record, name, _send_page(sink, page, held)))
                after = page[-1].seq  # in outbox order: no row is read twice in a pass, recorded or not
            if len(page) < self.page:
                break
        for done in recording:
            report += done.result()
        return report

    def _record(self, name: str, outcomes: list[tuple[Due, SyncdError | None]]) -> DeliveryReport:
        """Record what was sent in one transaction, and each failure with its retry time."""
        report = DeliveryReport()
        delivered = [item for item, failure in outcomes if failure is None]
        if delivered:
            seqs = [item.seq for item in delivered]
            self.db.run(lambda s: outbox.mark_delivered(s, name, seqs, self.clock()), what=f"outbox for sink {name}")
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

    def _failed(self, name: str, item: Due, exc: SyncdError) -> DeliveryReport:
        message = first_line(exc)
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
            self.db.run(lambda s: outbox.mark(s, item, "dead", now, message))
            return DeliveryReport(dead=1)
        delay = retry_delay(item.attempts + 1, base=1.0, cap=300.0, rng=self.rng)
        if isinstance(exc, RateLimited) and exc.retry_after:
            delay = max(delay, exc.retry_after)
        self.db.run(lambda s: outbox.mark(s, item, "pending", now, message, now + timedelta(seconds=delay)))
        return DeliveryReport(failed=1)

    def close(self) -> None:
        self._recorder.shutdown(wait=True)
        self._leases.close()
        for sink in self.sinks.values():
            sink.close()


def _send_page(sink: Sink, page: list[Due], held: set[str]) -> list[tuple[Due, SyncdError | None]]:
    """Send a page, each user's events in order; different users' side by side where the sink
    can, else in outbox order. A user whose event fails (now, or earlier in ``held``) gets no
    more this pass: their later events wait behind it."""
    outcomes: list[tuple[Due, SyncdError | None]] = []
    if sink.concurrency == 1:
        for item in page:
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
    queues: dict[str, list[Due]] = {}
    for item in page:
        if item.user_id not in held:
            queues.setdefault(item.user_id, []).append(item)
    sent = sink.deliver_all([[item.payload for item in queue] for queue in queues.values()]) if queues else []
    for queue, (count, failure) in zip(queues.values(), sent, strict=True):
        outcomes += [(item, None) for item in queue[:count]]
        if failure is not None:
            held.add(queue[count].user_id)
            outcomes.append((queue[count], failure))
    return outcomes
