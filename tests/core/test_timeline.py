"""The timeline (`syncd.core.timeline`): contiguous intervals by the same rules as the live
status, checked against `advance` at random instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.availability import AVAILABLE, AWAY, Period, StatusPolicy, advance, initial_state, set_manual
from syncd.core.daysoff import DaysOff, HolidayRule
from syncd.core.errors import UserInputError
from syncd.core.timeline import MAX_SPAN, Interval, timeline

WEEKDAYS_9_17 = {d: [(time(9), time(17))] for d in range(5)}
START = datetime(2026, 12, 18, tzinfo=UTC)  # a Friday before Christmas
POLICIES = [
    StatusPolicy("UTC"),
    StatusPolicy("Europe/Stockholm", WEEKDAYS_9_17, True, DaysOff(HolidayRule("SE"), frozenset({date(2026, 12, 24)}))),
    StatusPolicy("Europe/Oslo", days_off=DaysOff(HolidayRule("NO"))),
    StatusPolicy("America/New_York", WEEKDAYS_9_17, False, DaysOff(HolidayRule("US", "NY"))),
    StatusPolicy("America/New_York", {0: [(time(22), time.max)], 1: [(time(0), time(6))]}, True,
                 DaysOff(HolidayRule("US"))),
]


def local(tz: str, y: int, mo: int, d: int, h: int = 0) -> datetime:
    return datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def at_instant(intervals: list[Interval], t: datetime) -> Interval:
    return next(i for i in intervals if i.start <= t < i.end)


def test_christmas_in_stockholm_with_working_hours() -> None:
    policy = POLICIES[1]
    ooo = Period("b1", local("Europe/Stockholm", 2026, 12, 21, 9), local("Europe/Stockholm", 2026, 12, 23, 17))
    got = timeline([ooo], policy, local("Europe/Stockholm", 2026, 12, 21), local("Europe/Stockholm", 2026, 12, 28, 12))
    assert [(i.start, i.status, i.reason, i.block, i.holiday) for i in got] == [
        (local("Europe/Stockholm", 2026, 12, 21), AWAY, "working_hours", None, None),
        (local("Europe/Stockholm", 2026, 12, 21, 9), AWAY, "ooo_started", "b1", None),
        (local("Europe/Stockholm", 2026, 12, 23, 17), AWAY, "working_hours", None, None),
        (local("Europe/Stockholm", 2026, 12, 24), AWAY, "day_off", None, None),
        (local("Europe/Stockholm", 2026, 12, 25), AWAY, "holiday", None, "Juldagen"),
        (local("Europe/Stockholm", 2026, 12, 26), AWAY, "holiday", None, "Annandag jul"),
        (local("Europe/Stockholm", 2026, 12, 27), AWAY, "working_hours", None, None),  # a Sunday
        (local("Europe/Stockholm", 2026, 12, 28, 9), AVAILABLE, "working_hours", None, None),
    ]
    assert got[-1].end == local("Europe/Stockholm", 2026, 12, 28, 12)
    assert got[4].as_json() == {"start": "2026-12-24T23:00:00Z", "end": "2026-12-25T23:00:00Z", "status": "away",
                                "reason": "holiday", "holiday": "Juldagen"}


def test_intervals_are_contiguous_and_cover_the_span() -> None:
    got = timeline([], POLICIES[3], START, START + MAX_SPAN)
    assert got[0].start == START and got[-1].end == START + MAX_SPAN
    assert all(a.end == b.start for a, b in zip(got, got[1:], strict=False))
    assert all((a.status, a.reason, a.holiday) != (b.status, b.reason, b.holiday) for a, b in zip(got, got[1:],
                                                                                                strict=False))


def test_a_manual_change_shows_until_the_next_automatic_transition() -> None:
    policy = POLICIES[2]  # Oslo, holidays only
    now = local("Europe/Oslo", 2026, 12, 25, 10)
    state = set_manual(initial_state([], policy, now), AVAILABLE, now).state
    got = timeline([], policy, now - timedelta(hours=10), local("Europe/Oslo", 2026, 12, 28))
    assert [(i.start, i.status, i.reason) for i in got[:1]] == [(now - timedelta(hours=10), AWAY, "holiday")]
    with_manual = timeline([], policy, now - timedelta(hours=10), local("Europe/Oslo", 2026, 12, 28), state)
    assert [(i.start, i.end, i.status, i.reason) for i in with_manual] == [
        (now - timedelta(hours=10), now, AWAY, "holiday"),
        # Christmas Day to Boxing Day is no transition (away both): the manual change holds through both.
        (now, local("Europe/Oslo", 2026, 12, 27), AVAILABLE, "manual"),
        (local("Europe/Oslo", 2026, 12, 27), local("Europe/Oslo", 2026, 12, 28), AVAILABLE, None),
    ]


@pytest.mark.parametrize("days", [91, 365])
def test_a_span_over_90_days_is_refused(days: int) -> None:
    with pytest.raises(UserInputError, match="at most 90 days"):
        timeline([], POLICIES[0], START, START + timedelta(days=days))


def test_an_empty_or_backward_span_is_refused() -> None:
    with pytest.raises(UserInputError, match="must be after"):
        timeline([], POLICIES[0], START, START)


minutes = st.integers(min_value=0, max_value=14 * 24 * 60)


@st.composite
def blocks(draw: st.DrawFn) -> list[Period]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        start = START + timedelta(minutes=draw(minutes))
        out.append(Period(f"b{i}", start, start + timedelta(minutes=draw(st.integers(1, 3 * 24 * 60)))))
    return out


@settings(max_examples=150, deadline=None)
@given(periods=blocks(), policy=st.sampled_from(POLICIES), now_at=minutes,
       manual=st.sampled_from([None, AVAILABLE, AWAY]), probes=st.lists(minutes, min_size=1, max_size=8))
def test_timeline_agrees_with_the_live_status_at_random_instants(
        periods: list[Period], policy: StatusPolicy, now_at: int, manual: str | None, probes: list[int]) -> None:
    now = START + timedelta(minutes=now_at)
    state = advance(initial_state(periods, policy, START), periods, policy, now).state
    if manual is not None:
        state = set_manual(state, manual, now).state  # type: ignore[arg-type]
    span_end = START + timedelta(days=16)
    intervals = timeline(periods, policy, now, span_end, state)
    assert intervals[0].start == now and intervals[-1].end == span_end
    for probe in probes:
        t = START + timedelta(minutes=probe)
        if t < now:
            continue
        live = advance(state, periods, policy, t).state
        shown = at_instant(intervals, t)
        assert shown.status == live.effective, (t, shown, live)
        if live.effective == AWAY and live.manual is None:
            assert (shown.reason, shown.block) == (live.reason, live.block_id), (t, shown, live)
        if live.manual is not None and live.manual != live.auto:
            assert shown.reason == "manual"


@pytest.mark.parametrize(("start", "end"), [(datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 5, tzinfo=UTC)),
                                            (datetime(9999, 12, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))])
def test_instants_out_of_reach_are_refused_not_crashed_on(start: datetime, end: datetime) -> None:
    with pytest.raises(UserInputError, match="out of range"):
        timeline([], POLICIES[1], start, end)
