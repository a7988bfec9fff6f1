"""Team coverage on a real database (SQLite and PostgreSQL): the intervals, the warnings a
block gets, and the coverage events staged for their instant, once across replicas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from store.models import DeliveryRow, OutboxRow
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.ooo import timed_content
from syncd.service import Syncd
from syncd.service.coverage import CoverageWatch
from syncd.service.directory import Directory
from syncd.service.recorder import LOOKAHEAD
from syncd.service.rotations import RotationEngine
from tests.conftest import Harness, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: a Monday

Factory = Callable[..., Harness]


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def team(h: Harness, members: list[str], minimum: int, name: str = "support") -> CoverageWatch:
    Directory(h.service, RotationEngine(h.service)).put_team(name, members, min_available=minimum)
    return CoverageWatch(h.service)


def away(h: Harness, member: str, start: float, end: float) -> str:
    return h.service.add_block(member, timed_content(at(start), at(end), "Away")).id


def coverage_events(h: Harness) -> list[tuple[str, str, int, datetime]]:
    """(type, at, available, due) of the coverage events queued, in outbox order."""
    def read(session: Any) -> list[tuple[str, str, int, datetime]]:
        rows = session.execute(select(OutboxRow.payload, DeliveryRow.next_attempt_at)
                               .join(DeliveryRow, DeliveryRow.outbox_seq == OutboxRow.seq)
                               .order_by(OutboxRow.seq))
        return [(p["type"], p["at"], p["available"], due) for p, due in rows if p["type"].startswith("coverage.")]
    return h.service.db.read(read)


def test_intervals_follow_the_members_blocks(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo"), user("cy")])
    watch = team(h, ["ada", "bo", "cy"], 2)
    away(h, "ada", 1, 3)
    away(h, "bo", 2, 4)
    found = watch.coverage("support", at(0), at(5))
    assert found.min_available == 2
    assert [(i.start, i.end, i.members_available, i.below_min) for i in found.intervals] == [
        (at(0), at(1), ("ada", "bo", "cy"), False),
        (at(1), at(2), ("bo", "cy"), False),
        (at(2), at(3), ("cy",), True),
        (at(3), at(4), ("ada", "cy"), False),
        (at(4), at(5), ("ada", "bo", "cy"), False),
    ]
    assert found.as_json()["intervals"][2] == {"start": iso(at(2)), "end": iso(at(3)), "available": 1,
                                               "members_available": ["cy"], "below_min": True}


def test_working_hours_count_when_the_rules_use_them(harness_factory: Factory) -> None:
    hours = {d: ((datetime.min.time().replace(hour=9), datetime.min.time().replace(hour=17)),) for d in range(5)}
    h = harness_factory([user("ada", tz="UTC", working_hours=hours), user("bo", tz="UTC")],
                        away_outside_working_hours=True)
    watch = team(h, ["ada", "bo"], 2)
    found = watch.coverage("support", at(0), at(10))  # Monday 09:00 to 19:00 UTC
    assert [(i.start, i.end, i.available) for i in found.intervals] == [(at(0), at(8), 2), (at(8), at(10), 1)]


def test_a_manual_change_counts_while_it_holds(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    h.service.set_status("ada", "away")
    found = watch.coverage("support", at(0), at(1))
    assert [(i.start, i.end, i.members_available) for i in found.intervals] == [(at(0), at(1), ("bo",))]


def test_bad_requests_are_refused_with_a_reason(harness_factory: Factory) -> None:
    h = harness_factory([user("ada")])
    watch = team(h, ["ada"], 1)
    with pytest.raises(UserInputError, match="at most 90 days"):
        watch.coverage("support", at(0), at(0) + timedelta(days=91))
    with pytest.raises(UserInputError, match="after from"):
        watch.coverage("support", at(1), at(1))
    with pytest.raises(NotFoundInStore, match="no team 'ghosts'"):
        watch.coverage("ghosts", at(0), at(1))
    with pytest.raises(UserInputError, match="min_available"):
        Directory(h.service, RotationEngine(h.service)).put_team("support", ["ada"], min_available=-1)


def test_a_block_warns_only_where_it_takes_the_team_below(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo"), user("cy"), user("di")])
    watch = team(h, ["ada", "bo", "cy"], 2)
    team(h, ["ada", "di"], 0, name="no-minimum")
    away(h, "bo", 2, 6)
    away(h, "cy", 4, 8)  # with bo, below from 4 to 6 already
    block = away(h, "ada", 0, 10)
    # With ada away the team is below from 2 to 8; from 4 to 6 it was below without her too.
    assert watch.warnings(block) == [
        {"team": "support", "from": iso(at(2)), "to": iso(at(4)), "available": 1, "min_available": 2},
        {"team": "support", "from": iso(at(6)), "to": iso(at(8)), "available": 1, "min_available": 2},
    ]
    assert watch.warnings(away(h, "di", 0, 10)) == []  # di's team has no minimum


def test_coverage_events_are_staged_for_their_instant_and_withdrawn_by_an_edit(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    assert watch.check_due() == 0 and coverage_events(h) == []
    block = away(h, "ada", 1, 3)
    assert watch.check_due() == 0  # an hour away: only looked at again shortly before
    h.clock.set(at(1) - LOOKAHEAD - timedelta(minutes=1))
    assert watch.check_due() == 0
    h.clock.set(at(1) - timedelta(seconds=25))
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(at(1)), 1, at(1))]
    h.service.delete_block(block)  # before the instant: the event must not go out
    assert watch.check_due() == 0 and coverage_events(h) == []
    away(h, "ada", 1, 3)
    assert watch.check_due() == 1
    h.clock.set(at(1) + timedelta(seconds=1))
    assert watch.check_due() == 0  # already staged, and now in the past: nothing more
    h.clock.set(at(3) - timedelta(seconds=20))
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(at(1)), 1, at(1)),
                                  ("coverage.restored", iso(at(3)), 2, at(3))]


def test_a_team_below_when_first_looked_at_is_announced_at_once(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    away(h, "ada", -1, 2)
    watch = team(h, ["ada", "bo"], 2)
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(T0), 1, T0)]
    assert watch.check_due(every_team=True) == 0  # nothing new


def test_an_edit_that_changes_coverage_now_is_announced_now(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    watch.check_due()
    h.clock.set(at(0.5))
    h.service.set_status("bo", "away")  # manual: counts from now
    h.service.add_block("ada", timed_content(at(0.5), at(5), "Sick"))
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(at(0.5)), 0, at(0.5))]


def test_removing_the_minimum_withdraws_what_was_staged(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    away(h, "ada", 1, 3)
    h.clock.set(at(1) - timedelta(seconds=25))
    assert watch.check_due() == 1
    team(h, ["ada", "bo"], 0)
    assert watch.check_due() == 0 and coverage_events(h) == []


def test_two_replicas_announce_each_crossing_once(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo"), user("cy")])
    team(h, ["ada", "bo", "cy"], 2)
    for name in ("ada", "bo"):
        away(h, name, 1, 3)
    h.clock.set(at(1) - timedelta(seconds=25))
    other = Syncd(h.service.config, h.service.db, clock=h.clock)
    watches = [CoverageWatch(h.service), CoverageWatch(other)]
    barrier = threading.Barrier(len(watches))
    errors: list[BaseException] = []

    def run(watch: CoverageWatch) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                watch.check_due(every_team=True)
        except BaseException as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(w,)) for w in watches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert coverage_events(h) == [("coverage.low", iso(at(1)), 1, at(1))]


def test_a_crossing_between_two_looks_keeps_its_own_instant(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    watch.check_due()
    h.clock.set(at(0) + timedelta(seconds=1))
    h.service.add_block("ada", timed_content(at(0) + timedelta(seconds=3), at(2), "Away"))
    h.clock.set(at(0) + timedelta(seconds=5))  # the next look comes after the block began
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(at(0) + timedelta(seconds=3)), 1,
                                   at(0) + timedelta(seconds=3))]


def test_a_block_written_into_the_past_is_announced_when_it_is_written(harness_factory: Factory) -> None:
    h = harness_factory([user("ada"), user("bo")])
    watch = team(h, ["ada", "bo"], 2)
    watch.check_due()
    h.clock.set(at(0.5))
    h.service.add_block("ada", timed_content(at(-3), at(2), "Sick since this morning"))
    assert watch.check_due() == 1
    assert coverage_events(h) == [("coverage.low", iso(at(0.5)), 1, at(0.5))]
