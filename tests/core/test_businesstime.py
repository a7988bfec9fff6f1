"""The business-hours clock (`syncd.core.businesstime`): due times and time spent on a team's
schedule, with DST days and holidays inside, checked by hand and by property."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.businesstime import MAX_SPAN, Schedule, add_working_time, working_periods, working_time
from syncd.core.daysoff import DaysOff, HolidayRule
from syncd.core.errors import UserInputError

WEEKDAYS_9_17 = {d: ((time(9), time(17)),) for d in range(5)}
STOCKHOLM = Schedule("Europe/Stockholm", WEEKDAYS_9_17, DaysOff(HolidayRule("SE"), frozenset({date(2026, 12, 24)})))
NEW_YORK = Schedule("America/New_York", {**WEEKDAYS_9_17, 4: ((time(9), time(12)), (time(13), time(17)))},
                    DaysOff(HolidayRule("US", "NY")))
# A night desk across midnight, on the day the clocks go back in New York.
NIGHTS = Schedule("America/New_York", {d: ((time(0), time(6)), (time(22), time.max)) for d in range(7)})
AROUND_THE_CLOCK = Schedule("Europe/Stockholm", None, DaysOff(HolidayRule("SE")))
SCHEDULES = [STOCKHOLM, NEW_YORK, NIGHTS, AROUND_THE_CLOCK]


def local(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def test_eight_working_hours_from_friday_afternoon_end_on_monday() -> None:
    start = local("Europe/Stockholm", 2026, 6, 5, 15)  # Friday 15:00
    assert add_working_time(STOCKHOLM, start, timedelta(hours=8)) == local("Europe/Stockholm", 2026, 6, 8, 15)


def test_holidays_and_days_off_are_skipped() -> None:
    # Tuesday 22 Dec 16:00: 1 h that day, the 23rd, then the 24th (day off), Juldagen, Annandag jul, a weekend.
    start = local("Europe/Stockholm", 2026, 12, 22, 16)
    assert add_working_time(STOCKHOLM, start, timedelta(hours=10)) == local("Europe/Stockholm", 2026, 12, 28, 10)
    assert working_time(STOCKHOLM, start, local("Europe/Stockholm", 2026, 12, 28, 10)) == timedelta(hours=10)


def test_a_dst_day_has_the_hours_its_wall_clock_shows() -> None:
    # Monday 2026-03-30 is the first working day of summer time in Stockholm: still 8 hours.
    day = local("Europe/Stockholm", 2026, 3, 30)
    assert working_time(STOCKHOLM, day, day + timedelta(days=1)) == timedelta(hours=8)
    assert add_working_time(STOCKHOLM, day, timedelta(hours=1)) == datetime(2026, 3, 30, 8, tzinfo=UTC)
    # New York falls back on Sunday 2026-11-01: the night 00:00-06:00 is 7 hours long.
    sunday = local("America/New_York", 2026, 11, 1)
    assert working_time(NIGHTS, sunday, local("America/New_York", 2026, 11, 1, 12)) == timedelta(hours=7)


def test_split_days_and_us_holidays() -> None:
    # Thanksgiving (Thursday 26 Nov) is off; Friday has a lunch break.
    start = local("America/New_York", 2026, 11, 25, 16)
    assert add_working_time(NEW_YORK, start, timedelta(hours=5)) == local("America/New_York", 2026, 11, 27, 14)


def test_around_the_clock_is_plain_arithmetic_even_on_holidays() -> None:
    start = local("Europe/Stockholm", 2026, 12, 24, 20)
    assert add_working_time(AROUND_THE_CLOCK, start, timedelta(hours=8)) == start + timedelta(hours=8)
    assert working_time(AROUND_THE_CLOCK, start, start + timedelta(days=3)) == timedelta(days=3)


def test_the_due_time_is_the_first_instant_the_time_is_used_up() -> None:
    start = local("Europe/Stockholm", 2026, 6, 1, 9)
    assert add_working_time(STOCKHOLM, start, timedelta(hours=8)) == local("Europe/Stockholm", 2026, 6, 1, 17)
    assert add_working_time(STOCKHOLM, start, timedelta(0)) == start


def test_limits() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(UserInputError, match="at most 366 days"):
        add_working_time(STOCKHOLM, start, MAX_SPAN + timedelta(seconds=1))
    with pytest.raises(UserInputError, match="at most 366 days apart"):
        working_time(STOCKHOLM, start, start + MAX_SPAN + timedelta(seconds=1))
    with pytest.raises(UserInputError, match="before start"):
        working_time(STOCKHOLM, start, start - timedelta(seconds=1))
    with pytest.raises(UserInputError, match="must not be negative"):
        add_working_time(STOCKHOLM, start, timedelta(seconds=-1))
    # Working hours only on a day that is always off: no due time, and it is said so (in bounded time).
    never = Schedule("UTC", {0: ((time(9), time(17)),)}, DaysOff(None, frozenset(
        date(2026, 1, 5) + timedelta(weeks=w) for w in range(400))))
    with pytest.raises(UserInputError, match="less than"):
        add_working_time(never, start, timedelta(hours=1))


def test_a_year_of_working_time_is_counted_day_by_day() -> None:
    start = local("Europe/Stockholm", 2026, 1, 1)
    year = working_time(STOCKHOLM, start, local("Europe/Stockholm", 2027, 1, 1))
    weekdays = sum(1 for i in range(365) if (date(2026, 1, 1) + timedelta(days=i)).weekday() < 5)
    weekday_days_off = sum(1 for d in STOCKHOLM.days_off.between(date(2026, 1, 1), date(2026, 12, 31))
                           if d.day.weekday() < 5)
    assert year == timedelta(hours=8 * (weekdays - weekday_days_off))


instants = st.integers(min_value=0, max_value=400 * 24 * 60).map(
    lambda m: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m))
durations = st.integers(min_value=0, max_value=2000 * 60).map(lambda m: timedelta(minutes=m))


@settings(max_examples=150, deadline=None)
@given(schedule=st.sampled_from(SCHEDULES), start=instants, duration=durations)
def test_adding_then_measuring_gives_back_the_duration(schedule: Schedule, start: datetime,
                                                      duration: timedelta) -> None:
    due = add_working_time(schedule, start, duration)
    assert due >= start
    assert working_time(schedule, start, due) == duration
    if duration > timedelta(0):  # the first such instant: a moment earlier, some was still left
        assert working_time(schedule, start, due - timedelta(seconds=1)) < duration


@settings(max_examples=100, deadline=None)
@given(schedule=st.sampled_from(SCHEDULES), start=instants, span=st.integers(0, 366 * 24 * 60))
def test_measuring_then_adding_reaches_no_later_than_the_end(schedule: Schedule, start: datetime, span: int) -> None:
    end = start + timedelta(minutes=span)
    spent = working_time(schedule, start, end)
    assert timedelta(0) <= spent <= end - start
    due = add_working_time(schedule, start, spent)
    assert due <= end and working_time(schedule, due, end) == timedelta(0)


@settings(max_examples=50, deadline=None)
@given(schedule=st.sampled_from(SCHEDULES), start=instants, span=st.integers(1, 60 * 24 * 60))
def test_periods_are_ordered_disjoint_and_inside(schedule: Schedule, start: datetime, span: int) -> None:
    end = start + timedelta(minutes=span)
    periods = list(working_periods(schedule, start, end))
    assert all(start <= low < high <= end for low, high in periods)
    assert all(a[1] <= b[0] for a, b in zip(periods, periods[1:], strict=False))


@pytest.mark.parametrize("start", [datetime(1, 1, 1, tzinfo=UTC), datetime(8998, 1, 1, tzinfo=UTC),
                                   datetime(9999, 12, 31, tzinfo=UTC)])
def test_starts_out_of_reach_are_refused_not_crashed_on(start: datetime) -> None:
    for ask in (lambda: add_working_time(STOCKHOLM, start, timedelta(hours=1)),
                lambda: working_time(STOCKHOLM, start, start)):
        with pytest.raises(UserInputError, match="out of range"):
            ask()
