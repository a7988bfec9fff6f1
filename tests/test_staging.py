"""Staged transitions: events of a boundary in the coming minute are queued ahead and sent at
its instant; an edit before the instant undoes them (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from store.models import DeliveryRow, OutboxRow, StatusLogRow, UserStatusRow
from syncd.errors import TransientError
from syncd.ooo import timed_content
from syncd.publisher import Publisher
from syncd.status import LOOKAHEAD, SETTLE
from tests.conftest import Clock, Harness, user
from tests.test_publisher import FakeSink

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


def test_a_staged_event_waits_behind_a_failing_earlier_one(
        h: Harness, clock: Clock, sink: FakeSink, publisher: Publisher) -> None:
    sink.fail_user("alice", lambda: TransientError("receiver down"))
    publisher.drain()  # alice's "away" fails and waits for a retry; bob's goes
    clock.set(END - timedelta(seconds=30))
    h.service.stage_ahead()
    clock.set(END)
    publisher.drain()
    assert sink.seen() == [("bob", "away"), ("bob", "available")]
    sink.fail = lambda event: None
    clock.advance(timedelta(minutes=10))
    publisher.drain()
    assert sink.seen("alice") == [("alice", "away"), ("alice", "available")]  # in order


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
