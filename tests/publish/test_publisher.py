"""The outbox publisher: every status change to every sink, in order per user,
at least once, with retries on the `retry_delay` backoff, Retry-After honoured, and dead
letters after the configured age. Real database, real `Publisher`, fake sinks (and one real
HTTP receiver for the webhook).
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import DeliveryRow, OutboxRow
from store.outbox import PARTITIONS
from syncd.config import SinkConfig
from syncd.core.errors import SyncdError, TransientError
from syncd.core.ooo import timed_content
from syncd.core.time import format_utc
from syncd.publish.publisher import Publisher
from syncd.publish.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature, verify_standard
from syncd.publish.sink import DeliveryThrottled, PermanentDeliveryError, Sink, retry_delay
from syncd.publish.webhook import WebhookSink
from tests.conftest import Clock, Harness, user

HarnessFactory = Callable[..., Harness]
MINUTE = timedelta(minutes=1)
SEED = 1


# -- fakes -----------------------------------------------------------------------------------
class FakeSink(Sink):
    """Keeps what it accepts. ``fail`` decides, per event, what (if anything) to raise instead."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.events: list[Mapping[str, Any]] = []
        self.calls: list[tuple[str, datetime]] = []  # (event id, when) for every attempt
        self.fail: Callable[[Mapping[str, Any]], Exception | None] = lambda event: None

    def deliver(self, event: Mapping[str, Any]) -> None:
        self.calls.append((event["id"], self.clock()))
        error = self.fail(event)
        if error is not None:
            raise error
        self.events.append(event)

    def fail_times(self, n: int, make: Callable[[], Exception]) -> None:
        """Fail the next ``n`` attempts (whatever the event), then succeed."""
        left = [n]

        def fail(event: Mapping[str, Any]) -> Exception | None:
            if left[0] <= 0:
                return None
            left[0] -= 1
            return make()
        self.fail = fail

    def fail_user(self, user_id: str, make: Callable[[], Exception]) -> None:
        self.fail = lambda event: make() if event["user"]["id"] == user_id else None

    def seen(self, user_id: str | None = None) -> list[tuple[str, str]]:
        return [(e["user"]["id"], e["status"]) for e in self.events if user_id in (None, e["user"]["id"])]


@dataclass
class Setup:
    h: Harness
    clock: Clock
    a: FakeSink
    b: FakeSink
    publisher: Publisher


@pytest.fixture
def setup(harness_factory: HarnessFactory, clock: Clock) -> Setup:
    h = harness_factory([user("alice"), user("bob"), user("carol")],
                        sinks=(SinkConfig(type="stdout", name="a"), SinkConfig(type="stdout", name="b")))
    a, b = FakeSink("a", clock), FakeSink("b", clock)
    publisher = Publisher(h.service.db, {"a": a, "b": b}, dead_letter_after=timedelta(hours=1), clock=clock,
                          rng=random.Random(SEED))
    return Setup(h, clock, a, b, publisher)


def toggle(s: Setup, uid: str, status: str) -> None:
    """One status change for ``uid`` (a manual one), a minute after the last."""
    s.clock.advance(MINUTE)
    s.h.service.set_status(uid, status)  # type: ignore[arg-type]


def deliveries(s: Setup, sink: str) -> list[DeliveryRow]:
    def work(session: Session) -> list[DeliveryRow]:
        rows = list(session.scalars(select(DeliveryRow).where(DeliveryRow.sink == sink)
                                    .order_by(DeliveryRow.outbox_seq)))
        session.expunge_all()
        return rows
    return s.h.service.db.run(work)


def row_of(s: Setup, sink: str, user_id: str, index: int = 0) -> DeliveryRow:
    return [r for r in deliveries(s, sink) if r.user_id == user_id][index]


def outbox_ids(s: Setup) -> list[str]:
    return s.h.service.db.run(lambda session: list(session.scalars(select(OutboxRow.event_id)
                                                                   .order_by(OutboxRow.seq))))


# -- ordering and fan-out --------------------------------------------------------------------
def test_each_sink_gets_every_event_in_outbox_order(setup: Setup) -> None:
    s = setup
    toggle(s, "alice", "away")
    toggle(s, "bob", "away")
    toggle(s, "alice", "available")
    toggle(s, "bob", "available")
    toggle(s, "alice", "away")
    assert [r.state for r in deliveries(s, "a")] == ["pending"] * 5  # written with the change, one per sink
    assert [r.state for r in deliveries(s, "b")] == ["pending"] * 5

    report = s.publisher.drain()

    assert report.delivered == 10 and report.failed == report.dead == 0
    expected = [("alice", "away"), ("bob", "away"), ("alice", "available"), ("bob", "available"),
                ("alice", "away")]
    assert s.a.seen() == expected
    assert s.b.seen() == expected
    assert [e["id"] for e in s.a.events] == [e["id"] for e in s.b.events] == outbox_ids(s)
    assert len(set(outbox_ids(s))) == 5
    assert all(r.state == "delivered" and r.attempts == 1 and r.delivered_at is not None
               for r in deliveries(s, "a") + deliveries(s, "b"))
    assert s.publisher.drain().delivered == 0  # delivered once, not again


def test_event_body(setup: Setup) -> None:
    s = setup
    toggle(s, "alice", "away")
    s.publisher.drain()
    (event,) = s.a.events
    assert set(event) == {"id", "type", "user", "status", "previous", "reason", "effective_at", "block",
                          "replacement"}
    assert event["type"] == "status.changed"
    assert event["user"] == {"id": "alice", "email": "alice@example.com"}
    assert (event["status"], event["previous"], event["block"]) == ("away", "available", None)
    assert event["effective_at"] == format_utc(s.clock.now)
    json.dumps(event)  # JSON-ready as is


# -- holding back ----------------------------------------------------------------------------
def test_failing_head_holds_that_users_later_events_but_not_other_users(setup: Setup) -> None:
    s = setup
    s.a.fail_user("alice", lambda: TransientError("receiver down for alice"))
    toggle(s, "alice", "away")
    toggle(s, "bob", "away")
    toggle(s, "alice", "available")
    toggle(s, "bob", "available")

    report = s.publisher.deliver_due()

    assert s.a.seen() == [("bob", "away"), ("bob", "available")]
    assert [eid for eid, _ in s.a.calls].count(outbox_ids(s)[2]) == 0  # alice's second never tried
    assert (report.delivered, report.failed) == (2 + 4, 1)  # sink b got all four
    assert s.b.seen() == [("alice", "away"), ("bob", "away"), ("alice", "available"), ("bob", "available")]
    head, second = row_of(s, "a", "alice", 0), row_of(s, "a", "alice", 1)
    assert (head.state, head.attempts, head.last_error) == ("pending", 1, "receiver down for alice")
    assert head.next_attempt_at > s.clock.now
    assert (second.state, second.attempts) == ("pending", 0)

    s.a.fail = lambda event: None  # the receiver is back
    assert s.publisher.deliver_due().delivered == 0  # not before the retry is due
    s.clock.set(head.next_attempt_at)
    s.publisher.deliver_due()
    assert s.a.seen("alice") == [("alice", "away"), ("alice", "available")]  # still in order


def test_a_user_with_many_waiting_events_does_not_starve_other_users(
    setup: Setup, clock: Clock
) -> None:
    s = setup
    publisher = Publisher(s.h.service.db, {"a": s.a}, dead_letter_after=timedelta(hours=1), clock=clock,
                          rng=random.Random(SEED), page=2)
    s.a.fail_user("alice", lambda: TransientError("alice's events are refused for now"))
    for status in ("away", "available", "away", "available"):
        toggle(s, "alice", status)
    toggle(s, "bob", "away")

    publisher.deliver_due()  # alice's head fails; her later events wait behind it
    publisher.deliver_due()  # alice is waiting for her retry: bob must not wait with her

    assert s.a.seen() == [("bob", "away")]


# -- retries ---------------------------------------------------------------------------------
def test_retries_follow_the_backoff_and_nothing_is_retried_before_it_is_due(setup: Setup) -> None:
    s = setup
    s.a.fail = lambda event: TransientError("HTTP 503 Service Unavailable")
    toggle(s, "alice", "away")
    reference = random.Random(SEED)  # the publisher's rng, replayed
    previous = s.clock.now
    for attempt in range(1, 9):
        s.publisher.deliver_due()
        assert len(s.a.calls) == attempt
        row = row_of(s, "a", "alice")
        expected = retry_delay(attempt, base=1.0, cap=300.0, rng=reference)
        assert (row.next_attempt_at - s.clock.now).total_seconds() == pytest.approx(expected, abs=2e-6)
        assert row.next_attempt_at > previous  # moves forward
        assert row.attempts == attempt and row.state == "pending"
        previous = row.next_attempt_at
        s.clock.set(row.next_attempt_at - timedelta(microseconds=10))
        s.publisher.deliver_due()
        assert len(s.a.calls) == attempt, "retried before it was due"
        s.clock.set(row.next_attempt_at)
    s.a.fail = lambda event: None
    s.publisher.deliver_due()
    assert s.a.seen() == [("alice", "away")]
    assert row_of(s, "a", "alice").attempts == 9


def test_retry_after_is_honoured(setup: Setup) -> None:
    s = setup
    s.a.fail_times(1, lambda: DeliveryThrottled("HTTP 429 Too Many Requests (retry after 120s)", 120.0, 429))
    toggle(s, "alice", "away")
    failed_at = s.clock.now
    assert s.publisher.deliver_due().failed == 1
    assert row_of(s, "a", "alice").next_attempt_at == failed_at + timedelta(seconds=120)
    s.clock.advance(timedelta(seconds=119))
    s.publisher.deliver_due()
    assert len(s.a.calls) == 1
    s.clock.set(failed_at + timedelta(seconds=120))
    s.publisher.deliver_due()
    assert s.a.seen() == [("alice", "away")]


def test_throttled_without_retry_after_uses_the_backoff(setup: Setup) -> None:
    s = setup
    s.a.fail_times(1, lambda: DeliveryThrottled("HTTP 429 Too Many Requests", None, 429))
    toggle(s, "alice", "away")
    s.publisher.deliver_due()
    delay = row_of(s, "a", "alice").next_attempt_at - s.clock.now
    assert timedelta(0) < delay <= timedelta(seconds=1)


# -- at least once ---------------------------------------------------------------------------
def test_redelivery_after_a_crash_carries_the_same_id(setup: Setup) -> None:
    s = setup
    toggle(s, "alice", "away")
    s.publisher.drain()

    # A crash after the sink accepted the event but before the "delivered" mark was committed:
    def crashed_before_mark(session: Session) -> None:
        session.execute(update(DeliveryRow).where(DeliveryRow.sink == "a")
                        .values(state="pending", delivered_at=None))
    s.h.service.db.run(crashed_before_mark)
    s.publisher.drain()

    ids = [e["id"] for e in s.a.events]
    assert len(ids) == 2 and ids[0] == ids[1] == outbox_ids(s)[0]
    assert len({e["id"]: e for e in s.a.events}) == 1  # a consumer dropping repeats by id sees it once
    assert len(s.b.events) == 1


# -- dead letters ----------------------------------------------------------------------------
def test_dead_letter_after_the_age_then_the_queue_moves_on(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    s = setup
    first_id: list[str] = []
    s.a.fail = lambda event: (PermanentDeliveryError("HTTP 422 Unprocessable Entity", 422)
                              if event["id"] in first_id else None)
    toggle(s, "alice", "away")
    first_id.append(outbox_ids(s)[0])
    created = s.clock.now
    toggle(s, "alice", "available")
    toggle(s, "bob", "away")

    with caplog.at_level(logging.INFO, "syncd.publish.publisher"):
        s.publisher.drain()
        assert s.a.seen() == [("bob", "away")]
        for _ in range(200):  # retried whenever due, until the first attempt past the age
            head = row_of(s, "a", "alice", 0)
            if head.state != "pending":
                break
            assert s.clock.now < created + timedelta(hours=1), "still retried past the age"
            assert s.a.seen("alice") == []  # held behind the head
            s.clock.set(head.next_attempt_at)
            s.publisher.drain()
        dead = row_of(s, "a", "alice", 0)

    assert dead.state == "dead" and dead.last_error == "HTTP 422 Unprocessable Entity"
    assert s.h.service.dead_letters() == 1
    assert s.a.seen("alice") == [("alice", "available")]  # the user's queue moved on, in the same drain
    assert s.b.seen("alice") == [("alice", "away"), ("alice", "available")]  # other sinks unaffected
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and first_id[0] in errors[0].getMessage()
    assert s.publisher.drain().delivered == 0 and s.h.service.dead_letters() == 1  # kept, not retried


def test_dead_letter_age_counts_from_the_change_not_from_the_first_attempt(setup: Setup) -> None:
    s = setup
    toggle(s, "alice", "away")
    s.clock.advance(timedelta(hours=2))  # e.g. the daemon was down
    s.a.fail_times(1, lambda: TransientError("connection refused"))
    report = s.publisher.deliver_due()
    assert report.dead == 1 and s.h.service.dead_letters() == 1
    assert row_of(s, "b", "alice").state == "delivered"


# -- logging ---------------------------------------------------------------------------------
def test_one_log_line_per_failure_episode_per_sink(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    s = setup
    s.a.fail = s.b.fail = lambda event: TransientError("cannot reach hooks.example.com: connection refused")
    toggle(s, "alice", "away")
    toggle(s, "bob", "away")
    with caplog.at_level(logging.DEBUG, "syncd.publish.publisher"):
        for _ in range(6):
            s.publisher.deliver_due()
            s.clock.advance(timedelta(minutes=5))  # everything is due again
        assert len(s.a.calls) == len(s.b.calls) == 12
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert sorted(r.getMessage().split(":")[0] for r in warnings) == ["sink a", "sink b"]
        assert all("connection refused" in r.getMessage() for r in warnings)
        caplog.clear()

        s.a.fail = s.b.fail = lambda event: None
        s.publisher.drain()
        s.publisher.drain()
        assert [r.getMessage() for r in caplog.records] == ["sink a: delivering again", "sink b: delivering again"]
        caplog.clear()

        s.a.fail = lambda event: TransientError("cannot reach hooks.example.com: connection refused")
        toggle(s, "carol", "away")
        s.publisher.deliver_due()
        assert [r.getMessage().split(":")[0] for r in caplog.records] == ["sink a"]  # a new episode
    assert s.b.seen() == [("alice", "away"), ("bob", "away"), ("carol", "away")]


# -- webhook, end to end ---------------------------------------------------------------------
@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[tuple[int, dict[str, str]]] = []  # consumed first; then 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(Received(dict(self.headers.items()), body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (204, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/syncd"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with Receiver() as r:
        yield r


def test_webhook_end_to_end(harness_factory: HarnessFactory, clock: Clock, receiver: Receiver) -> None:
    secret = "whsec-test-0123456789abcdef"  # not whsec_: its UTF-8 bytes are the key (27)
    h = harness_factory([user("alice")], sinks=(SinkConfig(type="webhook", name="hook"),))
    sink = WebhookSink("hook", receiver.url, secret, timeout=5.0, clock=lambda: clock().timestamp())
    publisher = Publisher(h.service.db, {"hook": sink}, dead_letter_after=timedelta(hours=1), clock=clock,
                          rng=random.Random(SEED))
    receiver.answers.append((503, {"Retry-After": "30"}))  # first attempt throttled
    block = h.service.add_block("alice", timed_content(clock.now, clock.now + timedelta(hours=2), "Dentist"))
    sent_at = clock.now

    assert publisher.drain().failed == 1
    (row,) = h.service.db.run(lambda s: list(s.scalars(select(DeliveryRow))))
    assert row.next_attempt_at == sent_at + timedelta(seconds=30)
    assert "HTTP 503" in (row.last_error or "") and row.state == "pending"
    clock.advance(timedelta(seconds=30))
    assert publisher.drain().delivered == 1

    first, second = receiver.requests
    assert first.body == second.body  # the same event, again
    assert first.headers[EVENT_ID_HEADER] == second.headers[EVENT_ID_HEADER]
    event = json.loads(second.body)
    assert second.headers[EVENT_ID_HEADER] == event["id"] == outbox_ids_of(h)[0]
    assert second.headers["Content-Type"] == "application/json"
    assert event["type"] == "status.changed"
    assert event["user"] == {"id": "alice", "email": "alice@example.com"}
    assert (event["status"], event["previous"], event["reason"]) == ("away", "available", "ooo_started")
    assert event["effective_at"] == format_utc(block.start)
    assert event["block"] == {"id": block.id, "start": format_utc(block.start), "end": format_utc(block.end),
                              "title": "Dentist"}

    header = second.headers[SIGNATURE_HEADER]
    now = int(clock().timestamp())
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(secret, header, second.body, now=now)
    assert not verify_signature("another-secret", header, second.body, now=now)
    assert not verify_signature(secret, header, second.body.replace(b"away", b"AWAY"), now=now)
    assert not verify_signature(secret, header, second.body, now=now + 3600)  # stale
    assert verify_signature(secret, first.headers[SIGNATURE_HEADER], first.body, now=now)  # 30 s old
    # Standard Webhooks: the event id is the webhook-id, and inside the MAC.
    assert second.headers["webhook-id"] == event["id"] and second.headers["webhook-timestamp"] == str(now)
    assert verify_standard(secret, second.headers, second.body, now=now)
    assert not verify_standard(secret, {**second.headers, "webhook-id": "another-id"}, second.body, now=now)

    clock.set(block.end)  # the block ends: the second change carries the block too
    h.service.advance_due()
    publisher.drain()
    back = json.loads(receiver.requests[-1].body)
    assert (back["status"], back["reason"], back["previous"]) == ("available", "ooo_ended", "away")
    assert back["id"] != event["id"]
    publisher.close()


def outbox_ids_of(h: Harness) -> list[str]:
    return h.service.db.run(lambda s: list(s.scalars(select(OutboxRow.event_id).order_by(OutboxRow.seq))))


def test_concurrent_passes_in_one_process_send_each_event_once(setup: Setup) -> None:
    """The status timer and the delivery job both run delivery passes; together they must
    not send an event twice."""
    s = setup
    for uid in ("alice", "bob", "carol"):
        toggle(s, uid, "away")
    started = threading.Barrier(2)
    slow = s.a.deliver

    def deliver_slowly(event: Mapping[str, Any]) -> None:
        threading.Event().wait(0.02)  # widen the window in which a second pass could read the row
        slow(event)
    s.a.deliver = deliver_slowly  # type: ignore[method-assign]

    def one_pass() -> None:
        started.wait()
        s.publisher.deliver_due()
    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [e["id"] for e in s.a.events]
    assert sorted(ids) == sorted(outbox_ids(s)) and len(ids) == len(set(ids)) == 3


# -- several replicas --------------------------------------------------------------------------
class _SlowSink(FakeSink):
    """A sink that takes a while per event, so two replicas' passes overlap."""

    def __init__(self, name: str, clock: Clock, lock: threading.Lock) -> None:
        super().__init__(name, clock)
        self.lock = lock

    def deliver(self, event: Mapping[str, Any]) -> None:
        threading.Event().wait(0.002)
        with self.lock:
            super().deliver(event)


def test_replicas_deliver_each_event_once_and_in_order(harness_factory: HarnessFactory, clock: Clock) -> None:
    h = harness_factory([user(f"u{n}") for n in range(8)], sinks=(SinkConfig(type="stdout", name="a"),))
    if h.service.db.dialect != "postgresql":
        pytest.skip("SQLite serves one replica; several share a PostgreSQL outbox")
    lock = threading.Lock()
    shared = _SlowSink("a", clock, lock)  # what the helpdesk receives, from whichever replica
    # Three live replicas: each takes its share of the sink's partitions (6, 6 and 4 of 16).
    replicas = [Publisher(h.service.db, {"a": shared}, dead_letter_after=timedelta(hours=1), clock=clock,
                          replicas=lambda: 3) for _ in range(3)]
    for round_ in range(6):
        for n in range(8):
            clock.advance(timedelta(seconds=1))
            h.service.set_status(f"u{n}", "away" if round_ % 2 == 0 else "available")
    threads = [threading.Thread(target=lambda p=p: [p.deliver_due() for _ in range(20)]) for p in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shares = [p.partitions("a") or frozenset() for p in replicas]
    for p in replicas:
        p.close()
    assert all(shares) and sum(map(len, shares)) == len(frozenset().union(*shares)) == PARTITIONS
    ids = [e["id"] for e in shared.events]
    written = h.service.db.run(lambda session: list(session.scalars(select(OutboxRow.event_id))))
    assert len(ids) == len(set(ids))  # nothing sent twice
    assert sorted(ids) == sorted(written) and len(written) >= 8 * 6  # and nothing left out
    for n in range(8):
        assert shared.seen(f"u{n}")[-1] == (f"u{n}", "available")
        order = [e["effective_at"] for e in shared.events if e["user"]["id"] == f"u{n}"]
        assert order == sorted(order)  # each user's changes in the order they happened


class SideBySideSink(FakeSink):
    """Takes several users' events at once (as the webhook does), interleaving the users."""

    concurrency = 4

    def deliver_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        sent = [0] * len(queues)
        failures: list[SyncdError | None] = [None] * len(queues)
        for round_ in range(max((len(q) for q in queues), default=0)):  # one event of each user per round
            for n, queue in enumerate(queues):
                if round_ < len(queue) and failures[n] is None:
                    try:
                        self.deliver(queue[round_])
                        sent[n] += 1
                    except SyncdError as exc:
                        failures[n] = exc
        return list(zip(sent, failures, strict=True))


def test_a_sink_that_sends_side_by_side_keeps_each_users_order(harness_factory: HarnessFactory,
                                                                clock: Clock) -> None:
    h = harness_factory([user("alice"), user("bob"), user("carol")], sinks=(SinkConfig(type="stdout", name="a"),))
    sink = SideBySideSink("a", clock)
    publisher = Publisher(h.service.db, {"a": sink}, dead_letter_after=timedelta(hours=1), clock=clock,
                          rng=random.Random(SEED))
    for status in ("away", "available", "away"):
        for uid in ("alice", "bob", "carol"):
            clock.advance(MINUTE)
            h.service.set_status(uid, status)  # type: ignore[arg-type]
    sink.fail = lambda event: TransientError("down") if event["user"]["id"] == "bob" else None

    report = publisher.deliver_due()

    assert report.delivered == 6 and report.failed == 1
    for uid in ("alice", "carol"):
        assert [s for _u, s in sink.seen(uid)] == ["away", "available", "away"]
    assert sink.seen("bob") == []  # held behind his first event
    sink.fail = lambda event: None
    clock.advance(timedelta(minutes=10))
    publisher.drain()
    assert [s for _u, s in sink.seen("bob")] == ["away", "available", "away"]
    publisher.close()
