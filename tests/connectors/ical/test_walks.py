"""Which recurrence rules are walked without counting (`plainly_bounded`), and that a rule
outside that set still is counted and stopped."""

from __future__ import annotations

from datetime import date, datetime

import icalendar
import pytest

from connectors.ical.walks import Budget, ExpansionLimits, WalkLimit, bounded_walk, plainly_bounded

START = datetime(2026, 1, 5, 9, 0)  # noqa: DTZ001 - a wall time, as rules are walked
HORIZON = datetime(2028, 1, 1)  # noqa: DTZ001


def rule(text: str) -> icalendar.vRecur:
    return icalendar.vRecur.from_ical(text)


@pytest.mark.parametrize("text", [
    "FREQ=WEEKLY;COUNT=20",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH",
    "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20270101T000000Z",
    "FREQ=MONTHLY;BYMONTHDAY=1,15",
    "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=-1",
    "FREQ=MONTHLY;BYDAY=-1FR",
    "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",  # a VTIMEZONE's daylight onset
    "FREQ=YEARLY;INTERVAL=4",
    "FREQ=DAILY;BYMONTH=12",
])
def test_everyday_rules_are_plain(text: str) -> None:
    assert plainly_bounded(rule(text), START, HORIZON)


@pytest.mark.parametrize("text", [
    "FREQ=SECONDLY",
    "FREQ=HOURLY;COUNT=3",
    "FREQ=YEARLY;BYHOUR=1,2,3;BYMINUTE=0,1,2",
    "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO,TU",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",  # never matches: dateutil walks to the year 9999
    "FREQ=MONTHLY;BYDAY=1MO;BYMONTHDAY=20",  # never matches either
    "FREQ=MONTHLY;BYDAY=5MO",  # not in every month
    "FREQ=YEARLY;BYDAY=20MO",
    "FREQ=DAILY;INTERVAL=7;BYDAY=TU",  # from a Monday: never a Tuesday
    "FREQ=MONTHLY;INTERVAL=12;BYMONTH=2",
    "FREQ=WEEKLY;INTERVAL=2;BYMONTHDAY=13",
    "FREQ=WEEKLY;INTERVAL=0",
])
def test_rules_that_may_be_costly_are_not(text: str) -> None:
    assert not plainly_bounded(rule(text), START, HORIZON)


def test_a_rule_icalendar_could_not_have_read_is_not_plain() -> None:
    assert not plainly_bounded({"FREQ": ["WEEKLY"], "BYDAY": ["XX"]}, START, HORIZON)
    assert not plainly_bounded({"FREQ": ["MONTHLY"], "BYMONTHDAY": ["x"]}, START, HORIZON)
    assert not plainly_bounded({"BYDAY": ["MO"]}, START, HORIZON)


def test_a_plain_rule_from_long_ago_is_not_plain() -> None:
    assert plainly_bounded(rule("FREQ=DAILY"), datetime(1900, 1, 1), HORIZON)  # noqa: DTZ001 - 46,000 days
    assert not plainly_bounded(rule("FREQ=DAILY"), datetime(1, 1, 1), HORIZON)  # noqa: DTZ001
    assert plainly_bounded(rule("FREQ=WEEKLY"), date(2026, 1, 5), HORIZON)  # an all-day DTSTART


def test_a_walk_that_is_not_plain_is_still_counted_and_stopped() -> None:
    import dateutil.rrule

    budget = Budget.starting_now(ExpansionLimits(expand_seconds=30.0))
    never = dateutil.rrule.rrulestr("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", dtstart=START)
    with pytest.raises(WalkLimit, match="too costly"), bounded_walk(budget.meter(50_000, "recurrence")):
        next(iter(never))
    # The same meter marked plain would not count it: which is why the rule decides, not the caller.
    assert not plainly_bounded(rule("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"), START, HORIZON)
