"""The status rules, tested against the pure engine in `syncd.core.availability`.

Every instant is a fixed aware datetime; nothing reads a clock. Most scenarios happen on
Monday 2026-06-01 (UTC) unless a time zone or DST change is the point of the test.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.availability import (
    AVAILABLE,
    AWAY,
    Period,
    StatusChange,
    StatusPolicy,
    StatusState,
    advance,
    auto_status,
    covering,
    initial_state,
    next_boundary,
    next_change,
    set_manual,
)
from syncd.core.ooo import all_day_content

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NEW_YORK = ZoneInfo("America/New_York")

NO_HOURS = StatusPolicy()
WEEKDAYS_9_17 = {d: [(time(9), time(17))] for d in range(5)}  # Mon-Fri 09-17, weekends off
UTC_HOURS = StatusPolicy("UTC", WEEKDAYS_9_17, True)
STOCKHOLM_HOURS = StatusPolicy("Europe/Stockholm", WEEKDAYS_9_17, True)


def mon(hour: int, minute: int = 0, *, day: int = 0) -> datetime:
    """An instant on Monday 2026-06-01 (+ ``day`` days), UTC."""
    return datetime(2026, 6, 1, hour, minute, tzinfo=UTC) + timedelta(days=day)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def block(block_id: str, start: datetime, end: datetime) -> Period:
    return Period(block_id, start, end)


def all_day(block_id: str, first: date, end_exclusive: date, tz: str) -> Period:
    content = all_day_content(first, end_exclusive, tz)
    return Period(block_id, content.start, content.end)


def run(periods: Sequence[Period], policy: StatusPolicy, start: datetime, *nows: datetime) -> tuple[
        StatusState, list[StatusChange]]:
    """Initial state at ``start``, then ``advance`` to each of ``nows``; all changes in order."""
    state = initial_state(periods, policy, start)
    changes: list[StatusChange] = []
    for now in nows:
        evaluation = advance(state, periods, policy, now)
        state = evaluation.state
        changes.extend(evaluation.changes)
    return state, changes


def summary(changes: Sequence[StatusChange]) -> list[tuple[str, str, datetime, str | None]]:
    return [(c.status, c.reason, c.effective_at, c.block_id) for c in changes]


def assert_consistent(changes: Sequence[StatusChange], first_previous: str | None = None) -> None:
    previous = first_previous
    last = None
    for change in changes:
        assert change.status != change.previous
        if previous is not None:
            assert change.previous == previous
        if last is not None:
            assert change.effective_at >= last
        previous, last = change.status, change.effective_at


# ---------------------------------------------------------------------------------------------
# Rule 1: auto(t) is away while any block covers t; blocks are half-open [start, end)
# ---------------------------------------------------------------------------------------------


def test_auto_available_without_blocks() -> None:
    assert auto_status([], NO_HOURS, mon(12))[0] == AVAILABLE


def test_auto_away_inside_block_with_its_id() -> None:
    assert auto_status([block("a", mon(10), mon(12))], NO_HOURS, mon(11)) == (AWAY, "ooo_started", "a")


def test_auto_half_open_away_at_start_instant() -> None:
    assert auto_status([block("a", mon(10), mon(12))], NO_HOURS, mon(10))[0] == AWAY


def test_auto_half_open_available_at_end_instant() -> None:
    periods = [block("a", mon(10), mon(12))]
    assert auto_status(periods, NO_HOURS, mon(12))[0] == AVAILABLE
    assert auto_status(periods, NO_HOURS, mon(12) - timedelta(microseconds=1))[0] == AWAY


def test_auto_available_before_block() -> None:
    assert auto_status([block("a", mon(10), mon(12))], NO_HOURS, mon(9, 59))[0] == AVAILABLE


def test_auto_away_while_any_of_several_blocks_covers() -> None:
    periods = [block("a", mon(8), mon(9)), block("b", mon(10), mon(12)), block("c", mon(14), mon(15))]
    assert auto_status(periods, NO_HOURS, mon(11))[:2] == (AWAY, "ooo_started")
    assert auto_status(periods, NO_HOURS, mon(11))[2] == "b"
    assert auto_status(periods, NO_HOURS, mon(13))[0] == AVAILABLE


def test_auto_ignores_other_zones_for_timed_blocks() -> None:
    # A timed block is UTC; the policy zone plays no part when working hours are off.
    policy = StatusPolicy("America/New_York")
    assert auto_status([block("a", mon(10), mon(12))], policy, mon(11))[0] == AWAY


def test_initial_state_available_reason_initial() -> None:
    state = initial_state([block("a", mon(10), mon(12))], NO_HOURS, mon(9))
    assert (state.auto, state.effective, state.reason, state.block_id) == (AVAILABLE, AVAILABLE, "initial", None)
    assert state.evaluated_at == mon(9) and state.manual is None


def test_initial_state_away_inside_block() -> None:
    state = initial_state([block("a", mon(10), mon(12))], NO_HOURS, mon(10))
    assert (state.auto, state.effective, state.reason, state.block_id) == (AWAY, AWAY, "ooo_started", "a")


# ---------------------------------------------------------------------------------------------
# Overlapping blocks act as their union
# ---------------------------------------------------------------------------------------------


def test_covering_orders_by_latest_end_first() -> None:
    periods = [block("short", mon(9), mon(11)), block("long", mon(10), mon(18)), block("mid", mon(8), mon(13))]
    assert [p.block_id for p in covering(periods, mon(10, 30))] == ["long", "mid", "short"]


def test_covering_excludes_ended_and_future_blocks() -> None:
    periods = [block("past", mon(8), mon(10)), block("now", mon(10), mon(11)), block("future", mon(11), mon(12))]
    assert [p.block_id for p in covering(periods, mon(10))] == ["now"]
    assert covering(periods, mon(12)) == []


def test_covering_empty() -> None:
    assert covering([], mon(10)) == []


def test_overlap_no_flap_at_inner_boundary() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(11), mon(14))]
    state, changes = run(periods, NO_HOURS, mon(9), mon(10), mon(11), mon(12), mon(13), mon(14), mon(15))
    assert summary(changes) == [
        (AWAY, "ooo_started", mon(10), "a"),
        (AVAILABLE, "ooo_ended", mon(14), "b"),
    ]
    assert state.effective == AVAILABLE


def test_overlap_one_change_at_union_end_in_one_step() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(11), mon(14)), block("c", mon(10, 30), mon(11, 30))]
    _, changes = run(periods, NO_HOURS, mon(9), mon(20))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a"), (AVAILABLE, "ooo_ended", mon(14), "b")]


def test_nested_block_inside_longer_block() -> None:
    periods = [block("outer", mon(8), mon(18)), block("inner", mon(10), mon(11))]
    _, changes = run(periods, NO_HOURS, mon(7), mon(20))
    assert summary(changes) == [(AWAY, "ooo_started", mon(8), "outer"), (AVAILABLE, "ooo_ended", mon(18), "outer")]


def test_adjacent_blocks_act_as_one() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(12), mon(14))]
    _, changes = run(periods, NO_HOURS, mon(9), mon(12), mon(20))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a"), (AVAILABLE, "ooo_ended", mon(14), "b")]


def test_overlap_state_block_follows_the_covering_block() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(11), mon(14))]
    state, _ = run(periods, NO_HOURS, mon(9), mon(10, 30))
    assert state.block_id == "a"
    state, _ = run(periods, NO_HOURS, mon(9), mon(11, 30))
    assert state.block_id == "b"  # b ends later: it says "away until 14:00"


# ---------------------------------------------------------------------------------------------
# Rule 2: automatic transitions at block start and end
# ---------------------------------------------------------------------------------------------


def test_transition_at_block_start() -> None:
    state, changes = run([block("a", mon(10), mon(12))], NO_HOURS, mon(9), mon(10))
    assert changes == [StatusChange(AWAY, AVAILABLE, "ooo_started", mon(10), "a")]
    assert (state.effective, state.reason, state.since, state.block_id) == (AWAY, "ooo_started", mon(10), "a")


def test_no_transition_just_before_block_start() -> None:
    _, changes = run([block("a", mon(10), mon(12))], NO_HOURS, mon(9), mon(9, 59))
    assert changes == []


def test_transition_at_block_end() -> None:
    state, changes = run([block("a", mon(10), mon(12))], NO_HOURS, mon(10), mon(12))
    assert changes == [StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(12), "a")]
    assert (state.effective, state.since, state.block_id) == (AVAILABLE, mon(12), None)


def test_transitions_carry_true_effective_time_when_evaluated_late() -> None:
    _, changes = run([block("a", mon(10), mon(12))], NO_HOURS, mon(9), mon(10, 7), mon(12, 42))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a"), (AVAILABLE, "ooo_ended", mon(12), "a")]


def test_block_id_on_away_change_when_two_start_together_is_the_longer() -> None:
    periods = [block("short", mon(10), mon(11)), block("long", mon(10), mon(13))]
    _, changes = run(periods, NO_HOURS, mon(9), mon(10))
    assert changes[0].block_id == "long"


def test_second_block_after_gap_gives_its_own_pair() -> None:
    periods = [block("a", mon(10), mon(11)), block("b", mon(13), mon(14))]
    _, changes = run(periods, NO_HOURS, mon(9), mon(15))
    assert summary(changes) == [
        (AWAY, "ooo_started", mon(10), "a"),
        (AVAILABLE, "ooo_ended", mon(11), "a"),
        (AWAY, "ooo_started", mon(13), "b"),
        (AVAILABLE, "ooo_ended", mon(14), "b"),
    ]


# ---------------------------------------------------------------------------------------------
# Rule 2: edits that make a block start or stop covering the present -> transition at now
# (the caller first carries the state to `now` with the old blocks, then applies the edit)
# ---------------------------------------------------------------------------------------------


def _at_now(old: Sequence[Period], new: Sequence[Period], start: datetime, now: datetime,
            *, ended_early: bool = False) -> tuple[StatusState, list[StatusChange]]:
    state, before = run(old, NO_HOURS, start, now)
    evaluation = advance(state, new, NO_HOURS, now, ended_early=ended_early)
    return evaluation.state, before + evaluation.changes


def test_block_created_covering_now() -> None:
    new = [block("n", mon(11), mon(15))]
    state, changes = _at_now([], new, mon(9), mon(12))
    assert changes == [StatusChange(AWAY, AVAILABLE, "ooo_started", mon(12), "n")]
    assert state.block_id == "n" and state.since == mon(12)


def test_block_created_covering_now_then_ends_normally() -> None:
    new = [block("n", mon(11), mon(15))]
    state, _ = _at_now([], new, mon(9), mon(12))
    evaluation = advance(state, new, NO_HOURS, mon(16))
    assert evaluation.changes == [StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(15), "n")]


def test_block_created_in_future_changes_nothing_now() -> None:
    _, changes = _at_now([], [block("n", mon(14), mon(15))], mon(9), mon(12))
    assert changes == []


def test_block_created_entirely_in_past_changes_nothing_now() -> None:
    _, changes = _at_now([], [block("n", mon(8), mon(9))], mon(10), mon(12))
    assert changes == []


def test_block_deleted_while_covering() -> None:
    old = [block("a", mon(10), mon(14))]
    state, changes = _at_now(old, [], mon(9), mon(12))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a"), (AVAILABLE, "ooo_ended", mon(12), "a")]
    assert state.effective == AVAILABLE and state.block_id is None


def test_block_deleted_while_covering_without_prior_advance() -> None:
    state = initial_state([block("a", mon(10), mon(14))], NO_HOURS, mon(11))
    evaluation = advance(state, [], NO_HOURS, mon(12))
    assert evaluation.changes == [StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(12), "a")]


def test_deleting_one_of_two_overlapping_blocks_keeps_away() -> None:
    a, b = block("a", mon(10), mon(14)), block("b", mon(11), mon(16))
    state, changes = _at_now([a, b], [a], mon(9), mon(12))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a")]
    assert state.effective == AWAY and state.block_id == "a"


def test_block_moved_to_future_stops_covering() -> None:
    old = [block("a", mon(10), mon(14))]
    moved = [block("a", mon(15), mon(17))]
    state, changes = _at_now(old, moved, mon(9), mon(12))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a"), (AVAILABLE, "ooo_ended", mon(12), "a")]
    # ... and the moved block later starts and ends at its new times.
    evaluation = advance(state, moved, NO_HOURS, mon(18))
    assert summary(evaluation.changes) == [(AWAY, "ooo_started", mon(15), "a"), (AVAILABLE, "ooo_ended", mon(17), "a")]


def test_block_moved_to_cover_now() -> None:
    old = [block("a", mon(15), mon(17))]
    moved = [block("a", mon(11), mon(13))]
    _, changes = _at_now(old, moved, mon(9), mon(12))
    assert summary(changes) == [(AWAY, "ooo_started", mon(12), "a")]


def test_block_end_extended_while_covering_changes_nothing() -> None:
    old = [block("a", mon(10), mon(13))]
    new = [block("a", mon(10), mon(18))]
    state, changes = _at_now(old, new, mon(9), mon(12))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a")]
    assert advance(state, new, NO_HOURS, mon(13)).changes == []


def test_block_ended_early_reason() -> None:
    old = [block("a", mon(10), mon(17))]
    new = [block("a", mon(10), mon(12))]  # end moved to now
    state, changes = _at_now(old, new, mon(9), mon(12), ended_early=True)
    assert summary(changes) == [
        (AWAY, "ooo_started", mon(10), "a"),
        (AVAILABLE, "ooo_ended_early", mon(12), "a"),
    ]
    assert state.reason == "ooo_ended_early" and state.effective == AVAILABLE


def test_two_overlapping_blocks_ended_early_single_change() -> None:
    old = [block("a", mon(10), mon(17)), block("b", mon(11), mon(19))]
    new = [block("a", mon(10), mon(12)), block("b", mon(11), mon(12))]
    _, changes = _at_now(old, new, mon(9), mon(12), ended_early=True)
    assert summary(changes)[1:] == [(AVAILABLE, "ooo_ended_early", mon(12), "b")]


def test_ended_early_flag_without_change_publishes_nothing() -> None:
    state, changes = _at_now([], [], mon(9), mon(12), ended_early=True)
    assert changes == [] and state.effective == AVAILABLE


def test_block_ended_early_without_prior_advance_reason() -> None:
    state = initial_state([block("a", mon(9), mon(17))], NO_HOURS, mon(10))
    evaluation = advance(state, [block("a", mon(9), mon(12))], NO_HOURS, mon(12), ended_early=True)
    assert summary(evaluation.changes) == [(AVAILABLE, "ooo_ended_early", mon(12), "a")]


# ---------------------------------------------------------------------------------------------
# Rule 3: a manual change holds until the next automatic transition
# ---------------------------------------------------------------------------------------------


def test_manual_away_publishes_manual_change() -> None:
    state = initial_state([], NO_HOURS, mon(9))
    evaluation = set_manual(state, AWAY, mon(9, 30))
    assert evaluation.changes == [StatusChange(AWAY, AVAILABLE, "manual", mon(9, 30), None)]
    assert (evaluation.state.effective, evaluation.state.reason, evaluation.state.manual) == (AWAY, "manual", AWAY)
    assert evaluation.state.since == mon(9, 30) and evaluation.state.auto == AVAILABLE


def test_manual_away_holds_with_no_automatic_transition() -> None:
    state = set_manual(initial_state([], NO_HOURS, mon(9)), AWAY, mon(9, 30)).state
    evaluation = advance(state, [], NO_HOURS, mon(9, day=3))
    assert evaluation.changes == [] and evaluation.state.effective == AWAY


def test_manual_away_holds_until_block_starts_and_ends() -> None:
    periods = [block("a", mon(12), mon(14))]
    state = set_manual(initial_state(periods, NO_HOURS, mon(9)), AWAY, mon(10)).state
    before_start = advance(state, periods, NO_HOURS, mon(11, 59))
    assert before_start.changes == [] and before_start.state.effective == AWAY
    at_start = advance(before_start.state, periods, NO_HOURS, mon(12))
    assert at_start.changes == []  # effective was already away: nothing to publish
    assert at_start.state.manual is None  # but the automatic transition ended the manual change
    assert at_start.state.reason == "ooo_started" and at_start.state.block_id == "a"
    at_end = advance(at_start.state, periods, NO_HOURS, mon(14))
    assert at_end.changes == [StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(14), "a")]


def test_manual_away_cleared_by_next_transition_in_one_step() -> None:
    periods = [block("a", mon(12), mon(14))]
    state = set_manual(initial_state(periods, NO_HOURS, mon(9)), AWAY, mon(10)).state
    evaluation = advance(state, periods, NO_HOURS, mon(15))
    assert summary(evaluation.changes) == [(AVAILABLE, "ooo_ended", mon(14), "a")]
    assert evaluation.state.manual is None and evaluation.state.effective == AVAILABLE


def test_manual_away_not_cleared_by_boundary_that_does_not_change_auto() -> None:
    # Block b ends while a still covers: no automatic transition, the manual change stays.
    periods = [block("a", mon(10), mon(18)), block("b", mon(10), mon(12))]
    state, _ = run(periods, NO_HOURS, mon(9), mon(11))
    state = set_manual(state, AWAY, mon(11)).state  # same status: nothing
    evaluation = advance(state, periods, NO_HOURS, mon(13))
    assert evaluation.changes == [] and evaluation.state.manual == AWAY


def test_manual_same_status_publishes_nothing_available() -> None:
    evaluation = set_manual(initial_state([], NO_HOURS, mon(9)), AVAILABLE, mon(10))
    assert evaluation.changes == [] and evaluation.state.effective == AVAILABLE


def test_manual_same_status_publishes_nothing_away_during_block() -> None:
    periods = [block("a", mon(9), mon(12))]
    evaluation = set_manual(initial_state(periods, NO_HOURS, mon(10)), AWAY, mon(10, 30))
    assert evaluation.changes == [] and evaluation.state.effective == AWAY


def test_manual_twice_publishes_once() -> None:
    state = initial_state([], NO_HOURS, mon(9))
    first = set_manual(state, AWAY, mon(10))
    second = set_manual(first.state, AWAY, mon(10, 5))
    assert len(first.changes) == 1 and second.changes == []


def test_manual_back_to_available_publishes_manual() -> None:
    state = set_manual(initial_state([], NO_HOURS, mon(9)), AWAY, mon(10)).state
    evaluation = set_manual(state, AVAILABLE, mon(11))
    assert evaluation.changes == [StatusChange(AVAILABLE, AWAY, "manual", mon(11), None)]


def test_manual_after_automatic_is_the_later_and_wins() -> None:
    periods = [block("a", mon(10), mon(12))]
    state, changes = run(periods, NO_HOURS, mon(9), mon(12, 30))
    assert changes[-1].status == AVAILABLE
    evaluation = set_manual(state, AWAY, mon(13))
    assert summary(evaluation.changes) == [(AWAY, "manual", mon(13), None)]
    assert advance(evaluation.state, periods, NO_HOURS, mon(20)).state.effective == AWAY


def test_manual_away_during_block_carries_block_id() -> None:
    periods = [block("a", mon(10), mon(12))]
    state, _ = run(periods, NO_HOURS, mon(9), mon(10, 30))
    # The user is away anyway; asking again is a no-op but the block is still the cause.
    evaluation = set_manual(state, AWAY, mon(11))
    assert evaluation.changes == [] and evaluation.state.block_id == "a"


# ---------------------------------------------------------------------------------------------
# Rule 5: downtime — every missed transition, in order, with true times, once
# ---------------------------------------------------------------------------------------------

DOWNTIME_BLOCKS = [
    block("a", mon(9), mon(10)),
    block("b", mon(11), mon(13)),
    block("c", mon(12), mon(15)),  # overlaps b: one away->available at 15:00
    block("d", mon(16), mon(16, 30)),  # entirely within the gap
]


def test_downtime_all_changes_in_order_with_true_times() -> None:
    state = initial_state(DOWNTIME_BLOCKS, NO_HOURS, mon(8))
    evaluation = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(18))
    assert summary(evaluation.changes) == [
        (AWAY, "ooo_started", mon(9), "a"),
        (AVAILABLE, "ooo_ended", mon(10), "a"),
        (AWAY, "ooo_started", mon(11), "b"),
        (AVAILABLE, "ooo_ended", mon(15), "c"),
        (AWAY, "ooo_started", mon(16), "d"),
        (AVAILABLE, "ooo_ended", mon(16, 30), "d"),
    ]
    assert_consistent(evaluation.changes, AVAILABLE)
    assert evaluation.state.evaluated_at == mon(18) and evaluation.state.since == mon(16, 30)


def test_downtime_no_repeats_on_second_advance_same_now() -> None:
    state = initial_state(DOWNTIME_BLOCKS, NO_HOURS, mon(8))
    first = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(18))
    second = advance(first.state, DOWNTIME_BLOCKS, NO_HOURS, mon(18))
    assert second.changes == [] and second.state == first.state


def test_downtime_no_repeats_on_later_advance() -> None:
    state = initial_state(DOWNTIME_BLOCKS, NO_HOURS, mon(8))
    first = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(18))
    assert advance(first.state, DOWNTIME_BLOCKS, NO_HOURS, mon(23)).changes == []


def test_downtime_block_entirely_within_gap_yields_away_then_available() -> None:
    periods = [block("gap", mon(10), mon(10, 1))]
    state = initial_state(periods, NO_HOURS, mon(9))
    evaluation = advance(state, periods, NO_HOURS, mon(11))
    assert evaluation.changes == [
        StatusChange(AWAY, AVAILABLE, "ooo_started", mon(10), "gap"),
        StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(10, 1), "gap"),
    ]


def test_downtime_starting_away_ends_and_restarts() -> None:
    state = initial_state(DOWNTIME_BLOCKS, NO_HOURS, mon(9, 30))
    evaluation = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(11, 30))
    assert summary(evaluation.changes) == [
        (AVAILABLE, "ooo_ended", mon(10), "a"),
        (AWAY, "ooo_started", mon(11), "b"),
    ]


def test_downtime_split_in_two_advances_gives_same_changes() -> None:
    state = initial_state(DOWNTIME_BLOCKS, NO_HOURS, mon(8))
    once = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(18)).changes
    half = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(12, 30))
    rest = advance(half.state, DOWNTIME_BLOCKS, NO_HOURS, mon(18))
    assert half.changes + rest.changes == once


def test_advance_backwards_in_time_is_a_no_op() -> None:
    state, _ = run(DOWNTIME_BLOCKS, NO_HOURS, mon(8), mon(18))
    evaluation = advance(state, DOWNTIME_BLOCKS, NO_HOURS, mon(12))
    assert evaluation.changes == [] and evaluation.state == state


# ---------------------------------------------------------------------------------------------
# Rule 6: future evaluation and "away until"
# ---------------------------------------------------------------------------------------------


def test_advance_to_future_instant_gives_status_there() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(14), mon(16))]
    state = initial_state(periods, NO_HOURS, mon(8))
    assert advance(state, periods, NO_HOURS, mon(11)).state.effective == AWAY
    assert advance(state, periods, NO_HOURS, mon(13)).state.effective == AVAILABLE
    assert advance(state, periods, NO_HOURS, mon(15)).state.effective == AWAY
    assert advance(state, periods, NO_HOURS, mon(16)).state.effective == AVAILABLE


def test_future_evaluation_matches_auto_status() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(11), mon(14))]
    state = initial_state(periods, NO_HOURS, mon(8))
    for minutes in range(0, 8 * 60, 17):
        t = mon(8) + timedelta(minutes=minutes)
        assert advance(state, periods, NO_HOURS, t).state.effective == auto_status(periods, NO_HOURS, t)[0]


def test_next_change_away_until_block_end() -> None:
    periods = [block("a", mon(10), mon(17))]
    state = initial_state(periods, NO_HOURS, mon(11))
    assert next_change(state, periods, NO_HOURS) == StatusChange(AVAILABLE, AWAY, "ooo_ended", mon(17), "a")


def test_next_change_away_until_union_end() -> None:
    periods = [block("a", mon(10), mon(12)), block("b", mon(11), mon(14)), block("c", mon(14), mon(15))]
    state = initial_state(periods, NO_HOURS, mon(10, 30))
    change = next_change(state, periods, NO_HOURS)
    assert change is not None and change.effective_at == mon(15) and change.status == AVAILABLE


def test_next_change_from_available_is_next_block_start() -> None:
    periods = [block("a", mon(10, day=2), mon(12, day=9))]
    state = initial_state(periods, NO_HOURS, mon(8))
    change = next_change(state, periods, NO_HOURS)
    assert change == StatusChange(AWAY, AVAILABLE, "ooo_started", mon(10, day=2), "a")


def test_next_change_long_block_beyond_a_week() -> None:
    periods = [block("a", mon(8), mon(8, day=30))]
    state = initial_state(periods, NO_HOURS, mon(9))
    change = next_change(state, periods, NO_HOURS)
    assert change is not None and change.effective_at == mon(8, day=30)


def test_next_change_none_without_blocks() -> None:
    assert next_change(initial_state([], NO_HOURS, mon(9)), [], NO_HOURS) is None


def test_next_change_none_when_all_blocks_past() -> None:
    periods = [block("a", mon(7), mon(8))]
    assert next_change(initial_state(periods, NO_HOURS, mon(9)), periods, NO_HOURS) is None


def test_next_change_none_when_manual_away_already_covers_the_next_block() -> None:
    periods = [block("a", mon(12), mon(14))]
    state = set_manual(initial_state(periods, NO_HOURS, mon(9)), AWAY, mon(10)).state
    change = next_change(state, periods, NO_HOURS)
    # Away (manually) until the block that follows ends.
    assert change is not None and (change.status, change.effective_at) == (AVAILABLE, mon(14))


def test_next_change_does_not_mutate_state() -> None:
    periods = [block("a", mon(10), mon(17))]
    state = initial_state(periods, NO_HOURS, mon(11))
    next_change(state, periods, NO_HOURS)
    assert state.evaluated_at == mon(11) and state.effective == AWAY


# ---------------------------------------------------------------------------------------------
# All-day blocks across DST in the user's zone
# ---------------------------------------------------------------------------------------------


def test_stockholm_all_day_across_spring_forward() -> None:
    # Mon 2026-03-23 .. Fri 2026-04-03; clocks go forward on Sun 2026-03-29.
    p = all_day("v", date(2026, 3, 23), date(2026, 4, 4), "Europe/Stockholm")
    assert p.start == datetime(2026, 3, 23, tzinfo=STOCKHOLM) == utc(2026, 3, 22, 23)
    assert p.end == datetime(2026, 4, 4, tzinfo=STOCKHOLM) == utc(2026, 4, 3, 22)
    assert p.end - p.start == timedelta(hours=24 * 12 - 1)


def test_stockholm_all_day_across_fall_back() -> None:
    # Mon 2026-10-19 .. Fri 2026-10-30; clocks go back on Sun 2026-10-25.
    p = all_day("v", date(2026, 10, 19), date(2026, 10, 31), "Europe/Stockholm")
    assert p.start == utc(2026, 10, 18, 22) and p.end == utc(2026, 10, 30, 23)
    assert p.end - p.start == timedelta(hours=24 * 12 + 1)


def test_stockholm_weekend_block_over_dst_day() -> None:
    # Fri 2026-03-27 .. Mon 2026-03-30 (4 days, one of them 23 h long).
    p = all_day("w", date(2026, 3, 27), date(2026, 3, 31), "Europe/Stockholm")
    assert p.end - p.start == timedelta(hours=4 * 24 - 1)


def test_stockholm_all_day_transitions_at_local_midnight() -> None:
    p = all_day("v", date(2026, 3, 23), date(2026, 4, 4), "Europe/Stockholm")
    policy = StatusPolicy("Europe/Stockholm")
    state = initial_state([p], policy, utc(2026, 3, 20, 12))
    evaluation = advance(state, [p], policy, utc(2026, 4, 6))
    assert summary(evaluation.changes) == [
        (AWAY, "ooo_started", datetime(2026, 3, 23, tzinfo=STOCKHOLM), "v"),
        (AVAILABLE, "ooo_ended", datetime(2026, 4, 4, tzinfo=STOCKHOLM), "v"),
    ]
    local = [c.effective_at.astimezone(STOCKHOLM) for c in evaluation.changes]
    assert [(t.hour, t.minute) for t in local] == [(0, 0), (0, 0)]
    assert [t.utcoffset() for t in local] == [timedelta(hours=1), timedelta(hours=2)]


def test_stockholm_all_day_fall_back_transitions_at_local_midnight() -> None:
    p = all_day("v", date(2026, 10, 19), date(2026, 10, 31), "Europe/Stockholm")
    state = initial_state([p], NO_HOURS, utc(2026, 10, 18, 21, 59))
    assert state.effective == AVAILABLE
    evaluation = advance(state, [p], NO_HOURS, utc(2026, 11, 1))
    assert [c.effective_at for c in evaluation.changes] == [utc(2026, 10, 18, 22), utc(2026, 10, 30, 23)]
    # Still away one minute before the (CET) local midnight at the end.
    assert auto_status([p], NO_HOURS, utc(2026, 10, 30, 22, 59))[0] == AWAY


def test_stockholm_all_day_not_away_on_the_utc_day_before() -> None:
    p = all_day("d", date(2026, 6, 1), date(2026, 6, 2), "Europe/Stockholm")
    assert auto_status([p], NO_HOURS, utc(2026, 5, 31, 21, 59))[0] == AVAILABLE
    assert auto_status([p], NO_HOURS, utc(2026, 5, 31, 22))[0] == AWAY
    assert auto_status([p], NO_HOURS, utc(2026, 6, 1, 22))[0] == AVAILABLE


def test_new_york_all_day_across_spring_forward() -> None:
    # Mon 2026-03-02 .. Fri 2026-03-13; US clocks go forward on Sun 2026-03-08.
    p = all_day("ny", date(2026, 3, 2), date(2026, 3, 14), "America/New_York")
    assert p.start == utc(2026, 3, 2, 5) and p.end == utc(2026, 3, 14, 4)
    assert p.end - p.start == timedelta(hours=24 * 12 - 1)
    _, changes = run([p], NO_HOURS, utc(2026, 3, 1), utc(2026, 3, 20))
    assert [c.effective_at.astimezone(NEW_YORK).time() for c in changes] == [time(0), time(0)]


def test_new_york_all_day_across_fall_back() -> None:
    # Mon 2026-10-26 .. Fri 2026-11-06; US clocks go back on Sun 2026-11-01.
    p = all_day("ny", date(2026, 10, 26), date(2026, 11, 7), "America/New_York")
    assert p.start == utc(2026, 10, 26, 4) and p.end == utc(2026, 11, 7, 5)
    assert p.end - p.start == timedelta(hours=24 * 12 + 1)
    _, changes = run([p], NO_HOURS, utc(2026, 10, 25), utc(2026, 11, 10))
    assert [c.effective_at for c in changes] == [p.start, p.end]
    assert [c.effective_at.astimezone(NEW_YORK).time() for c in changes] == [time(0), time(0)]


def test_same_dates_different_zones_are_different_instants() -> None:
    s = all_day("s", date(2026, 6, 1), date(2026, 6, 2), "Europe/Stockholm")
    n = all_day("n", date(2026, 6, 1), date(2026, 6, 2), "America/New_York")
    assert n.start - s.start == timedelta(hours=6)
    assert auto_status([n], NO_HOURS, utc(2026, 6, 1, 2))[0] == AVAILABLE
    assert auto_status([s], NO_HOURS, utc(2026, 6, 1, 2))[0] == AWAY


# ---------------------------------------------------------------------------------------------
# Working hours (only when the operator turns it on)
# ---------------------------------------------------------------------------------------------


def test_hours_away_outside_with_reason() -> None:
    assert auto_status([], UTC_HOURS, mon(8, 59)) == (AWAY, "working_hours", None)
    assert auto_status([], UTC_HOURS, mon(17)) == (AWAY, "working_hours", None)


def test_hours_available_inside() -> None:
    assert auto_status([], UTC_HOURS, mon(9))[0] == AVAILABLE
    assert auto_status([], UTC_HOURS, mon(16, 59))[0] == AVAILABLE


def test_hours_day_without_hours_is_away() -> None:
    saturday = mon(12, day=5)
    assert auto_status([], UTC_HOURS, saturday) == (AWAY, "working_hours", None)


def test_hours_flag_off_ignores_hours() -> None:
    policy = StatusPolicy("UTC", WEEKDAYS_9_17, False)
    assert auto_status([], policy, mon(3))[0] == AVAILABLE
    assert initial_state([], policy, mon(3)).effective == AVAILABLE
    assert advance(initial_state([], policy, mon(3)), [], policy, mon(3, day=7)).changes == []
    assert next_boundary([], policy, mon(3)) is None


@pytest.mark.parametrize("hours", [None, {}])
def test_hours_flag_on_without_hours_never_away_for_hours(hours: dict[int, list[tuple[time, time]]] | None) -> None:
    policy = StatusPolicy("Europe/Stockholm", hours, True)
    assert not policy.uses_hours
    assert auto_status([], policy, mon(3))[0] == AVAILABLE
    assert advance(initial_state([], policy, mon(3)), [], policy, mon(3, day=7)).changes == []


def test_hours_transitions_with_reason() -> None:
    _, changes = run([], UTC_HOURS, mon(8), mon(20))
    assert summary(changes) == [
        (AVAILABLE, "working_hours", mon(9), None),
        (AWAY, "working_hours", mon(17), None),
    ]


def test_hours_initial_state_outside_hours() -> None:
    state = initial_state([], UTC_HOURS, mon(7))
    assert (state.effective, state.reason) == (AWAY, "working_hours")


def test_hours_over_a_week_gives_ten_changes() -> None:
    _, changes = run([], UTC_HOURS, mon(0), mon(0, day=7))
    assert len(changes) == 10
    assert {c.reason for c in changes} == {"working_hours"}
    assert_consistent(changes, AWAY)


def test_hours_local_boundaries_across_spring_forward() -> None:
    # Fri 2026-03-27 (CET, +1) to Mon 2026-03-30 (CEST, +2) in Stockholm.
    state = initial_state([], STOCKHOLM_HOURS, utc(2026, 3, 27, 11))
    evaluation = advance(state, [], STOCKHOLM_HOURS, utc(2026, 3, 30, 11))
    assert summary(evaluation.changes) == [
        (AWAY, "working_hours", utc(2026, 3, 27, 16), None),  # 17:00 CET
        (AVAILABLE, "working_hours", utc(2026, 3, 30, 7), None),  # 09:00 CEST
    ]


def test_hours_local_boundaries_on_the_dst_day_itself() -> None:
    every_day = StatusPolicy("Europe/Stockholm", {d: [(time(9), time(17))] for d in range(7)}, True)
    state = initial_state([], every_day, utc(2026, 3, 28, 12))
    evaluation = advance(state, [], every_day, utc(2026, 3, 29, 20))
    assert [c.effective_at for c in evaluation.changes] == [
        utc(2026, 3, 28, 16),  # Sat 17:00 CET
        utc(2026, 3, 29, 7),  # Sun 09:00 CEST
        utc(2026, 3, 29, 15),  # Sun 17:00 CEST
    ]


def test_hours_local_boundaries_across_fall_back() -> None:
    # Fri 2026-10-23 (CEST) to Mon 2026-10-26 (CET).
    state = initial_state([], STOCKHOLM_HOURS, utc(2026, 10, 23, 10))
    evaluation = advance(state, [], STOCKHOLM_HOURS, utc(2026, 10, 26, 10))
    assert [c.effective_at for c in evaluation.changes] == [utc(2026, 10, 23, 15), utc(2026, 10, 26, 8)]


def test_hours_new_york_across_spring_forward() -> None:
    policy = StatusPolicy("America/New_York", WEEKDAYS_9_17, True)
    state = initial_state([], policy, utc(2026, 3, 6, 15))
    evaluation = advance(state, [], policy, utc(2026, 3, 9, 15))
    assert [c.effective_at for c in evaluation.changes] == [utc(2026, 3, 6, 22), utc(2026, 3, 9, 13)]


def test_hours_time_max_range_ends_at_midnight() -> None:
    # Monday evening shift until midnight, nothing on Tuesday.
    policy = StatusPolicy("UTC", {0: [(time(18), time.max)]}, True)
    assert auto_status([], policy, mon(23, 59))[0] == AVAILABLE
    assert auto_status([], policy, mon(0, day=1))[0] == AWAY
    _, changes = run([], policy, mon(12), mon(12, day=1))
    assert summary(changes) == [
        (AVAILABLE, "working_hours", mon(18), None),
        (AWAY, "working_hours", mon(0, day=1), None),
    ]


def test_hours_time_max_then_midnight_start_no_flap() -> None:
    # Night shift Mon 18:00 -> Tue 06:00 written as two ranges.
    policy = StatusPolicy("UTC", {0: [(time(18), time.max)], 1: [(time(0), time(6))]}, True)
    _, changes = run([], policy, mon(12), mon(12, day=1))
    assert summary(changes) == [
        (AVAILABLE, "working_hours", mon(18), None),
        (AWAY, "working_hours", mon(6, day=1), None),
    ]


def test_hours_time_max_ends_at_local_midnight_in_zone() -> None:
    # Stockholm Sat 2026-03-28 evening until local midnight (23:00 UTC, CET).
    policy = StatusPolicy("Europe/Stockholm", {5: [(time(20), time.max)]}, True)
    _, changes = run([], policy, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert [c.effective_at for c in changes] == [utc(2026, 3, 28, 19), utc(2026, 3, 28, 23)]


def test_hours_multiple_ranges_per_day() -> None:
    policy = StatusPolicy("UTC", {0: [(time(8), time(12)), (time(13), time(17))]}, True)
    assert auto_status([], policy, mon(12, 30)) == (AWAY, "working_hours", None)
    _, changes = run([], policy, mon(7), mon(20))
    assert [(c.status, c.effective_at) for c in changes] == [
        (AVAILABLE, mon(8)),
        (AWAY, mon(12)),
        (AVAILABLE, mon(13)),
        (AWAY, mon(17)),
    ]


def test_hours_touching_ranges_no_flap() -> None:
    policy = StatusPolicy("UTC", {0: [(time(8), time(12)), (time(12), time(17))]}, True)
    _, changes = run([], policy, mon(7), mon(20))
    assert [(c.status, c.effective_at) for c in changes] == [(AVAILABLE, mon(8)), (AWAY, mon(17))]


def test_hours_ooo_block_ending_outside_hours_keeps_away() -> None:
    periods = [block("a", mon(10), mon(20))]
    state, changes = run(periods, UTC_HOURS, mon(9, 30), mon(12), mon(17), mon(20))
    assert summary(changes) == [(AWAY, "ooo_started", mon(10), "a")]
    assert (state.effective, state.reason, state.auto_reason, state.block_id) == (
        AWAY, "working_hours", "working_hours", None)
    evaluation = advance(state, periods, UTC_HOURS, mon(10, day=1))
    assert summary(evaluation.changes) == [(AVAILABLE, "working_hours", mon(9, day=1), None)]


def test_hours_ooo_block_starting_outside_hours_no_publish_then_ends_inside() -> None:
    periods = [block("a", mon(20), mon(12, day=1))]
    state, changes = run(periods, UTC_HOURS, mon(18), mon(21))
    assert changes == []
    assert (state.effective, state.reason, state.block_id) == (AWAY, "ooo_started", "a")
    evaluation = advance(state, periods, UTC_HOURS, mon(13, day=1))
    assert summary(evaluation.changes) == [(AVAILABLE, "ooo_ended", mon(12, day=1), "a")]


def test_hours_manual_available_outside_hours_until_next_transition() -> None:
    state = initial_state([], UTC_HOURS, mon(7))
    manual = set_manual(state, AVAILABLE, mon(7, 30))
    assert summary(manual.changes) == [(AVAILABLE, "manual", mon(7, 30), None)]
    at_start = advance(manual.state, [], UTC_HOURS, mon(9))
    assert at_start.changes == [] and at_start.state.manual is None
    at_end = advance(at_start.state, [], UTC_HOURS, mon(17))
    assert summary(at_end.changes) == [(AWAY, "working_hours", mon(17), None)]


def test_hours_manual_away_inside_hours_cleared_by_hours_end() -> None:
    state = initial_state([], UTC_HOURS, mon(10))
    state = set_manual(state, AWAY, mon(11)).state
    evaluation = advance(state, [], UTC_HOURS, mon(10, day=1))
    assert summary(evaluation.changes) == [(AVAILABLE, "working_hours", mon(9, day=1), None)]


def test_hours_block_deleted_during_hours_publishes_available() -> None:
    old = [block("a", mon(10), mon(15))]
    state, _ = run(old, UTC_HOURS, mon(9, 30), mon(12))
    evaluation = advance(state, [], UTC_HOURS, mon(12))
    assert summary(evaluation.changes) == [(AVAILABLE, "ooo_ended", mon(12), "a")]


def test_hours_block_deleted_outside_hours_no_publish() -> None:
    old = [block("a", mon(15), mon(15, day=1))]
    state, _ = run(old, UTC_HOURS, mon(10), mon(20))
    evaluation = advance(state, [], UTC_HOURS, mon(20))
    assert evaluation.changes == [] and evaluation.state.effective == AWAY and evaluation.state.block_id is None


def test_hours_block_deleted_outside_hours_next_morning_reason() -> None:
    old = [block("a", mon(15), mon(15, day=1))]
    state, _ = run(old, UTC_HOURS, mon(10), mon(20))
    deleted = advance(state, [], UTC_HOURS, mon(20)).state
    evaluation = advance(deleted, [], UTC_HOURS, mon(10, day=1))
    assert summary(evaluation.changes) == [(AVAILABLE, "working_hours", mon(9, day=1), None)]
    assert deleted.auto_reason == "working_hours"


def test_hours_block_created_outside_hours_published_reason_when_it_ends() -> None:
    state, _ = run([], UTC_HOURS, mon(18), mon(20))
    new = [block("n", mon(19), mon(12, day=1))]
    created = advance(state, new, UTC_HOURS, mon(20))
    assert created.changes == [] and created.state.block_id == "n"
    evaluation = advance(created.state, new, UTC_HOURS, mon(13, day=1))
    assert summary(evaluation.changes) == [(AVAILABLE, "ooo_ended", mon(12, day=1), "n")]


def test_hours_block_created_outside_hours_state_reason() -> None:
    state, _ = run([], UTC_HOURS, mon(18), mon(20))
    created = advance(state, [block("n", mon(19), mon(12, day=1))], UTC_HOURS, mon(20)).state
    assert (created.auto_reason, created.reason, created.block_id) == ("ooo_started", "ooo_started", "n")


def test_hours_next_change_after_block_ending_outside_hours() -> None:
    periods = [block("a", mon(10), mon(20))]
    state = initial_state(periods, UTC_HOURS, mon(11))
    change = next_change(state, periods, UTC_HOURS)
    assert change == StatusChange(AVAILABLE, AWAY, "working_hours", mon(9, day=1), None)


def test_hours_next_change_over_weekend() -> None:
    friday_evening = mon(18, day=4)
    state = initial_state([], UTC_HOURS, friday_evening)
    change = next_change(state, [], UTC_HOURS)
    assert change is not None and change.effective_at == mon(9, day=7)


def test_hours_next_change_none_when_always_in_hours() -> None:
    always = StatusPolicy("UTC", {d: [(time(0), time.max)] for d in range(7)}, True)
    assert next_change(initial_state([], always, mon(12)), [], always) is None


def test_hours_start_in_skipped_hour_transition_at_true_instant() -> None:
    policy = StatusPolicy("Europe/Stockholm", {6: [(time(2, 30), time(5))]}, True)
    state = initial_state([], policy, utc(2026, 3, 29, 0, 30))
    evaluation = advance(state, [], policy, utc(2026, 3, 29, 1, 15))
    assert evaluation.state.effective == auto_status([], policy, utc(2026, 3, 29, 1, 15))[0] == AVAILABLE
    assert [c.effective_at for c in evaluation.changes] == [utc(2026, 3, 29, 1)]


def test_hours_end_in_repeated_hour_stepping_equals_once() -> None:
    policy = StatusPolicy("Europe/Stockholm", {6: [(time(1), time(2, 30))]}, True)
    t0, end = utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2)
    state = initial_state([], policy, t0)
    once = advance(state, [], policy, end).changes
    stepped: list[StatusChange] = []
    for k in range(1, 11):
        evaluation = advance(state, [], policy, t0 + timedelta(minutes=15 * k))
        state = evaluation.state
        stepped.extend(evaluation.changes)
    assert stepped == once
    for c in once:
        assert auto_status([], policy, c.effective_at)[0] == c.status
        assert auto_status([], policy, c.effective_at - timedelta(microseconds=1))[0] != c.status


# ---------------------------------------------------------------------------------------------
# next_boundary: the daemon's timer
# ---------------------------------------------------------------------------------------------


def test_next_boundary_earliest_start_or_end() -> None:
    periods = [block("a", mon(14), mon(16)), block("b", mon(10), mon(13)), block("c", mon(11), mon(12))]
    assert next_boundary(periods, NO_HOURS, mon(9)) == mon(10)
    assert next_boundary(periods, NO_HOURS, mon(10)) == mon(11)  # strictly after
    assert next_boundary(periods, NO_HOURS, mon(11, 30)) == mon(12)
    assert next_boundary(periods, NO_HOURS, mon(13)) == mon(14)


def test_next_boundary_none_after_everything() -> None:
    assert next_boundary([block("a", mon(10), mon(12))], NO_HOURS, mon(12)) is None
    assert next_boundary([], NO_HOURS, mon(12)) is None


def test_next_boundary_includes_working_hours() -> None:
    periods = [block("a", mon(10, day=2), mon(12, day=2))]
    assert next_boundary(periods, UTC_HOURS, mon(7)) == mon(9)
    assert next_boundary(periods, UTC_HOURS, mon(9)) == mon(17)
    assert next_boundary(periods, UTC_HOURS, mon(18, day=4)) == mon(9, day=7)  # Friday evening -> Monday


def test_next_boundary_block_before_hour_boundary() -> None:
    assert next_boundary([block("a", mon(9, 30), mon(10))], UTC_HOURS, mon(9)) == mon(9, 30)


def test_next_boundary_hours_in_local_zone() -> None:
    assert next_boundary([], STOCKHOLM_HOURS, utc(2026, 3, 28, 12)) == utc(2026, 3, 30, 7)


# ---------------------------------------------------------------------------------------------
# Property: stepping never skips, repeats or shifts a change
# ---------------------------------------------------------------------------------------------

SPRING_BASE = utc(2026, 3, 28, 12)  # spans the Stockholm spring-forward of 2026-03-29
SPAN_MINUTES = 3 * 24 * 60

period_strategy = st.builds(
    lambda i, start, length: (i, start, length),
    st.integers(0, 5),
    st.integers(0, SPAN_MINUTES),
    st.integers(1, 24 * 60),
)

hours_strategy = st.one_of(
    st.none(),
    st.dictionaries(
        st.integers(0, 6),
        st.lists(
            st.tuples(st.integers(4, 20), st.integers(1, 4)).map(
                lambda sl: (time(sl[0]), time(sl[0] + sl[1]) if sl[0] + sl[1] < 24 else time.max)),
            max_size=2,
        ),
        max_size=7,
    ),
)


def _periods(raw: list[tuple[int, int, int]]) -> list[Period]:
    return [
        Period(f"b{n}-{i}", SPRING_BASE + timedelta(minutes=s), SPRING_BASE + timedelta(minutes=s + length))
        for n, (i, s, length) in enumerate(raw)
    ]


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.lists(period_strategy, max_size=6),
    start=st.integers(0, SPAN_MINUTES),
    steps=st.lists(st.integers(0, 600), min_size=1, max_size=20),
    hours=hours_strategy,
    tz=st.sampled_from(["UTC", "Europe/Stockholm", "America/New_York"]),
)
def test_property_stepping_equals_single_advance(raw: list[tuple[int, int, int]], start: int, steps: list[int],
                                                   hours: dict[int, list[tuple[time, time]]] | None,
                                                   tz: str) -> None:
    periods = _periods(raw)
    policy = StatusPolicy(tz, hours, hours is not None)
    t0 = SPRING_BASE + timedelta(minutes=start)
    instants = []
    t = t0
    for step in steps:
        t += timedelta(minutes=step)
        instants.append(t)
    end = instants[-1]

    initial = initial_state(periods, policy, t0)
    once = advance(initial, periods, policy, end)

    state, stepped = initial, []
    for now in instants:
        evaluation = advance(state, periods, policy, now)
        state = evaluation.state
        stepped.extend(evaluation.changes)

    # (a) same changes, same times, no skips or duplicates
    assert stepped == once.changes
    assert state.effective == once.state.effective and state.since == once.state.since
    # (b) alternating statuses, non-decreasing times, all inside (t0, end]
    assert_consistent(once.changes, initial.effective)
    assert all(t0 < c.effective_at <= end for c in once.changes)
    assert len({c.effective_at for c in once.changes}) == len(once.changes)
    # (c) without manual changes the effective status is auto(end)
    assert once.state.effective == once.state.auto == auto_status(periods, policy, end)[0]
    # every change lands where auto really changes
    for c in once.changes:
        assert auto_status(periods, policy, c.effective_at)[0] == c.status
    # and a repeated advance publishes nothing
    assert advance(once.state, periods, policy, end).changes == []


@settings(max_examples=200, deadline=None, database=None)
@given(
    raw=st.lists(period_strategy, max_size=6),
    start=st.integers(0, SPAN_MINUTES),
    probe=st.integers(0, SPAN_MINUTES),
)
def test_property_future_status_and_next_change(raw: list[tuple[int, int, int]], start: int, probe: int) -> None:
    periods = _periods(raw)
    t0 = SPRING_BASE + timedelta(minutes=start)
    at = t0 + timedelta(minutes=probe)
    state = initial_state(periods, NO_HOURS, t0)
    # rule 6: status at a future instant, assuming no manual change, is auto there
    assert advance(state, periods, NO_HOURS, at).state.effective == auto_status(periods, NO_HOURS, at)[0]
    # next_change is the first change advance would publish, and auto is constant until then
    change = next_change(state, periods, NO_HOURS)
    far = SPRING_BASE + timedelta(minutes=3 * SPAN_MINUTES)
    first = advance(state, periods, NO_HOURS, far).changes[:1]
    assert ([change] if change else []) == first
    if change is not None:
        assert change.status != state.effective
        assert auto_status(periods, NO_HOURS, change.effective_at)[0] == change.status
        nb = next_boundary(periods, NO_HOURS, t0)
        assert nb is not None and nb <= change.effective_at
