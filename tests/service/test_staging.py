"""Staged transitions: events of a boundary in the coming minute are queued ahead and sent at
its instant; an edit before the instant undoes them (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from store.models import DeliveryRow, OutboxRow, StatusLogRow, UserStatusRow
from store.outbox import partition_of
from syncd.core.errors import TransientError
from syncd.core.ooo import timed_content
from syncd.publish.publisher import Publisher
from syncd.service.recorder import LOOKAHEAD, SETTLE
from tests.conftest import Clock, Harness, user
from tests.publish.test_publisher import FakeSink

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
END = T0 + timedelta(hours=2)


@pytest.fixture
def h(harness_factory: Callable[..., Harness]) -> Harness:
    h = harness_factory([user("alice"), user("bob")])
    h.service.add_block("alice", timed_content(T0 - timedelta(hours=1), END))  # away now, until END
    h.service.add_block("bob", timed_content(T0 - timedelta(hours=1), END))
    return h


@pytest.fixture
def sink(clock: Clock) -> FakeSink:
    return FakeSink("stdout", clock)


@pytest.fixture
def publisher(h: Harness, sink: FakeSink, clock: Clock) -> Publisher:
    return Publisher(h.service.db, {"stdout": sink}, dead_letter_after=timedelta(days=1), clock=clock,
                     rng=random.Random(7))


def staged_users(h: Harness) -> list[str]:
    return h.service.db.read(lambda s: list(s.scalars(select(UserStatusRow.user_id)
                                                      .where(UserStatusRow.staged_for.is_not(None))
                                                      .order_by(UserStatusRow.user_id))))


def logged(h: Harness, user_id: str) -> list[tuple[str, datetime]]:
    return h.service.db.read(lambda s: [(r.status, r.effective_at) for r in s.scalars(
        select(StatusLogRow).where(StatusLogRow.user_id == user_id).order_by(StatusLogRow.id))])


def outbox_size(h: Harness) -> int:
    return int(h.service.db.read(lambda s: s.scalar(select(func.count()).select_from(OutboxRow))) or 0)


def test_nothing_is_staged_beyond_the_lookahead(h: Harness, clock: Clock) -> None:
    clock.set(END - LOOKAHEAD - timedelta(seconds=1))
    assert h.service.stage_ahead() == set()
    assert staged_users(h) == []


def test_staged_events_wait_for_their_instant_then_go_out_once(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    publisher.drain()  # the two "away"s
    assert sink.seen() == [("alice", "away"), ("bob", "away")]
    clock.set(END - timedelta(seconds=30))
    assert h.service.stage_ahead() == {END}
    assert staged_users(h) == ["alice", "bob"]
    assert h.service.user_state("alice").effective == "away"  # the state changes at the instant, not before
    assert [status for status, _ in logged(h, "alice")] == ["away"]
    assert publisher.drain().delivered == 0  # queued, not yet due

    clock.set(END)
    assert publisher.drain().delivered == 2  # sent at the instant, before the timer has run
    assert sink.seen()[2:] == [("alice", "available"), ("bob", "available")]
    assert all(e["effective_at"] == "2026-03-02T11:00:00Z" for e in sink.events[2:])

    clock.advance(timedelta(milliseconds=300))
    assert h.service.advance_due() == 0
    assert staged_users(h) == ["alice", "bob"]  # written once the sending is over
    assert h.service.status("alice").status == "available"  # reads evaluate up to now meanwhile
    clock.advance(SETTLE)
    assert h.service.advance_due() == 0  # applied, not published again
    assert staged_users(h) == []
    assert h.service.user_state("alice").effective == "available"
    assert logged(h, "alice") == [("away", T0), ("available", END)]
    assert outbox_size(h) == 4
    assert publisher.drain().delivered == 0


def test_an_edit_before_the_instant_undoes_the_staged_events(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    publisher.drain()
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    block = h.service.list_blocks("alice")[0]
    clock.advance(timedelta(seconds=10))
    h.service.edit_block(block.id, timed_content(T0 - timedelta(hours=1), END + timedelta(hours=1)))  # stays away

    assert staged_users(h) == ["bob"]
    clock.set(END + timedelta(seconds=1))
    publisher.drain()
    h.service.advance_due()
    publisher.drain()
    assert sink.seen("alice") == [("alice", "away")]  # the undone "available" never went out
    assert sink.seen("bob") == [("bob", "away"), ("bob", "available")]
    assert h.service.user_state("alice").effective == "away"
    assert logged(h, "alice") == [("away", T0)]

    clock.set(END + timedelta(hours=1))
    h.service.advance_due()
    publisher.drain()
    assert sink.seen("alice") == [("alice", "away"), ("alice", "available")]
    assert sink.events[-1]["effective_at"] == "2026-03-02T12:00:00Z"


def test_a_manual_change_before_the_instant_undoes_them_too(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    publisher.drain()
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    h.service.set_status("bob", "available", end_ooo_early=True)
    clock.set(END + timedelta(seconds=1))
    h.service.advance_due()
    publisher.drain()
    # bob: one "available", at the time he ended his OOO early, not a second one at END
    assert [(e["status"], e["effective_at"]) for e in sink.events if e["user"]["id"] == "bob"] == [
        ("away", "2026-03-02T09:00:00Z"), ("available", "2026-03-02T10:59:30Z")]


def test_a_restart_after_the_instant_applies_what_was_staged(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    """Staged, then the daemon was down across the instant: the start-up catch-up applies the
    staged state and publishes nothing twice."""
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    clock.set(END + timedelta(hours=3))
    assert h.service.advance_all() == 0
    publisher.drain()
    assert sink.seen() == [("alice", "away"), ("bob", "away"), ("alice", "available"), ("bob", "available")]
    assert logged(h, "bob") == [("away", T0), ("available", END)]


def test_the_sweep_leaves_staged_users_alone(h: Harness, clock: Clock) -> None:
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    clock.advance(timedelta(seconds=5))
    h.service.advance_all()
    assert staged_users(h) == ["alice", "bob"]
    assert outbox_size(h) == 4


def test_a_staged_event_does_not_hold_back_an_earlier_due_one(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()  # the "away"s from the start are still pending
    assert publisher.drain().delivered == 2
    assert sink.seen() == [("alice", "away"), ("bob", "away")]


def test_boundaries_of_many_users_are_published_in_batches(harness_factory: Callable[..., Harness],
                                                           clock: Clock) -> None:
    """The timer evaluates due users in batches: every user gets their transition, once."""
    h = harness_factory([user(f"u{n}") for n in range(25)])
    for n in range(25):
        h.service.add_block(f"u{n}", timed_content(T0 - timedelta(hours=1), END))
    clock.set(END + timedelta(seconds=1))
    assert h.service.advance_due(limit=4) == 25
    rows = h.service.db.read(lambda s: list(s.scalars(select(DeliveryRow))))
    assert len(rows) == 50 and len({r.outbox_seq for r in rows}) == 50
    assert all(h.service.user_state(f"u{n}").effective == "available" for n in range(25))
    assert h.service.advance_due(limit=4) == 0


def test_a_restart_before_the_instant_keeps_what_was_staged(h: Harness, clock: Clock) -> None:
    """Each start writes the config's users again; unchanged, their staged events stay."""
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    h.service.prepare()
    assert staged_users(h) == ["alice", "bob"]
    assert outbox_size(h) == 4


def test_a_following_boundary_sooner_than_the_settling_is_not_delayed(
        harness_factory: Callable[..., Harness], clock: Clock) -> None:
    h = harness_factory([user("alice")])
    h.service.add_block("alice", timed_content(T0 - timedelta(hours=1), END))
    h.service.add_block("alice", timed_content(END + timedelta(seconds=2), END + timedelta(hours=1)))
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    clock.set(END + timedelta(seconds=2))
    assert h.service.advance_due() == 1  # away again at END + 2 s, not 10 s later
    assert logged(h, "alice") == [("away", T0), ("available", END), ("away", END + timedelta(seconds=2))]


# -- prepared ahead of the instant -------------------------------------------------------------


class PreparingSink(FakeSink):
    """Notes what it was told ahead, and which events it sent from that."""

    def __init__(self, name: str, clock: Clock) -> None:
        super().__init__(name, clock)
        self.prepared: dict[str, float] = {}  # event id -> instant
        self.sent_prepared: list[str] = []

    def prepare(self, events: Sequence[Mapping[str, Any]], at: float) -> None:
        self.prepared.update((str(e["id"]), at) for e in events)

    def deliver(self, event: Mapping[str, Any]) -> None:
        super().deliver(event)
        if self.prepared.pop(str(event["id"]), None) is not None:
            self.sent_prepared.append(str(event["id"]))


@pytest.fixture
def preparing(h: Harness, clock: Clock) -> tuple[PreparingSink, Publisher]:
    sink = PreparingSink("stdout", clock)
    return sink, Publisher(h.service.db, {"stdout": sink}, dead_letter_after=timedelta(days=1), clock=clock,
                           rng=random.Random(7))


def stage_and_prepare(h: Harness, clock: Clock, publisher: Publisher, ahead: timedelta) -> int:
    clock.set(END - timedelta(seconds=30))
    assert h.service.stage_ahead() == {END}
    clock.set(END - ahead)
    return publisher.prepare(END)


def test_prepared_events_go_out_at_their_instant_once(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher]) -> None:
    sink, publisher = preparing
    publisher.drain()
    assert stage_and_prepare(h, clock, publisher, timedelta(seconds=5)) == 2
    assert set(sink.prepared.values()) == {END.timestamp()}
    assert publisher.drain().delivered == 0  # told ahead, not sent ahead

    clock.set(END)
    assert publisher.drain().delivered == 2
    assert sink.seen()[2:] == [("alice", "available"), ("bob", "available")]
    assert len(sink.sent_prepared) == 2
    clock.advance(timedelta(seconds=1))
    assert publisher.drain().delivered == 0  # recorded: not sent again by the page pass


def test_an_edit_after_preparing_still_withdraws_the_event(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher]) -> None:
    sink, publisher = preparing
    publisher.drain()
    stage_and_prepare(h, clock, publisher, timedelta(seconds=5))
    block = h.service.list_blocks("alice")[0]
    clock.set(END - timedelta(seconds=2))
    h.service.edit_block(block.id, timed_content(T0 - timedelta(hours=1), END + timedelta(hours=1)))

    clock.set(END)
    publisher.drain()
    assert sink.seen("alice") == [("alice", "away")]  # the withdrawn "available" never went out
    assert sink.seen("bob") == [("bob", "away"), ("bob", "available")]


def test_prepared_events_another_replica_sent_are_not_sent_again(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher], sink: FakeSink,
        publisher: Publisher) -> None:
    ours, prepared_here = preparing
    publisher.drain()  # the other replica
    stage_and_prepare(h, clock, prepared_here, timedelta(seconds=5))
    clock.set(END)
    assert publisher.drain().delivered == 2  # the other replica had the sink at the instant
    assert prepared_here.drain().delivered == 0
    assert ours.events == []


@pytest.mark.parametrize("prepared", [False, True], ids=["staged", "prepared"])
def test_a_staged_event_waits_behind_a_failing_earlier_one(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher], prepared: bool) -> None:
    sink, publisher = preparing
    sink.fail_user("alice", lambda: TransientError("receiver down"))
    publisher.drain()  # alice's "away" fails and waits for a retry; bob's goes
    if prepared:
        stage_and_prepare(h, clock, publisher, timedelta(seconds=5))
    else:
        clock.set(END - timedelta(seconds=30))
        h.service.stage_ahead()
    clock.set(END)
    publisher.drain()
    assert sink.seen() == [("bob", "away"), ("bob", "available")]
    sink.fail = lambda event: None
    clock.advance(timedelta(minutes=10))
    publisher.drain()
    assert sink.seen("alice") == [("alice", "away"), ("alice", "available")]  # in order


def test_a_prepared_event_goes_after_an_earlier_one_not_yet_sent(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher]) -> None:
    sink, publisher = preparing
    stage_and_prepare(h, clock, publisher, timedelta(seconds=5))  # the "away"s were never sent
    clock.set(END)
    assert publisher.drain().delivered == 4
    assert sink.seen("alice") == [("alice", "away"), ("alice", "available")]
    assert sink.seen("bob") == [("bob", "away"), ("bob", "available")]


def test_what_was_prepared_in_partitions_another_replica_takes_is_let_go(
        h: Harness, clock: Clock, preparing: tuple[PreparingSink, Publisher], sink: FakeSink) -> None:
    if h.service.db.dialect != "postgresql":
        pytest.skip("SQLite serves one replica: it delivers every partition")
    ours, prepared_here = preparing
    prepared_here.drain()  # alone, it takes every partition (and sends the "away"s)
    stage_and_prepare(h, clock, prepared_here, timedelta(seconds=5))
    assert prepared_here.held_prepared() == 2
    # Three more replicas come alive: this one keeps its fair share, 4 partitions (bob's among
    # them, not alice's), and another replica takes the next 4.
    assert (partition_of("bob"), partition_of("alice")) == (0, 7)
    prepared_here.replicas = lambda: 4
    other = Publisher(h.service.db, {"stdout": sink}, dead_letter_after=timedelta(days=1), clock=clock,
                      replicas=lambda: 4)
    clock.set(END)
    assert prepared_here.deliver_due().delivered == 1
    assert prepared_here.held_prepared() == 0  # alice's was let go, not kept for an instant past
    assert other.deliver_due().delivered == 1
    assert ours.seen()[-1] == ("bob", "available") and ours.sent_prepared
    assert sink.seen() == [("alice", "available")]
    assert prepared_here.partitions("stdout") == frozenset(range(4))
    assert other.partitions("stdout") == frozenset(range(4, 8))
