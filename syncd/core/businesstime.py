"""The business-hours clock: time that counts only while a team works.

A `Schedule` is a team's working hours in its zone, less its days off (public holidays and
company days off, whole local days). SLA targets are measured on it: `add_working_time`
answers when a number of working hours after an instant are used up (the due time), and
`working_time` how much working time lies between two instants (the time spent). A team
without working hours works around the clock: both are plain arithmetic, days off or not.

Each local day's working periods are turned into UTC instants in the team's zone, so a DST
day has the hours its wall clock shows (a 09:00-17:00 day is 8 hours on the day the clocks
change, and the night shift across the change is an hour shorter or longer). Both functions
visit each day of the span once: a year costs a few hundred days, never more than
`MAX_SPAN` plus the `SEARCH_LIMIT` for a due time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from syncd.core.daysoff import DaysOff
from syncd.core.errors import UserInputError
from syncd.core.hours import WorkingHours
from syncd.core.time import LATEST, format_utc, local_midnight, within_reach

__all__ = ["MAX_SPAN", "SEARCH_LIMIT", "Schedule", "add_working_time", "working_periods", "working_time"]

# Durations and spans asked about: at most this long (SLA targets are hours to weeks).
MAX_SPAN = timedelta(days=366)
# How far past the start a due time is looked for before the schedule is called too thin.
SEARCH_LIMIT = timedelta(days=5 * 366)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a team works: ``working_hours`` in ``timezone`` except on ``days_off``; no
    working hours means around the clock (24/7)."""

    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    days_off: DaysOff = DaysOff()

    @property
    def round_the_clock(self) -> bool:
        return not self.working_hours or not any(self.working_hours.values())


def _wall(day: date, wall: time, tz: ZoneInfo) -> datetime:
    if wall == time.max:  # 24:00: the next local midnight
        return local_midnight(day + timedelta(days=1), tz)
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def working_periods(schedule: Schedule, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The working periods inside ``[start, end)``, clipped to it, in order."""
    if schedule.round_the_clock:
        if start < end:
            yield start, end
        return
    assert schedule.working_hours is not None
    tz = ZoneInfo(schedule.timezone)
    day = start.astimezone(tz).date()  # ranges end by 24:00: no day reaches into the next
    last = end.astimezone(tz).date()
    while day <= last:
        if schedule.days_off.on(day) is None:
            for wall_start, wall_end in schedule.working_hours.get(day.weekday(), ()):
                low, high = max(_wall(day, wall_start, tz), start), min(_wall(day, wall_end, tz), end)
                if low < high:
                    yield low, high
        day += timedelta(days=1)


def _check_start(start: datetime) -> None:
    if start.tzinfo is None or start.utcoffset() is None:
        raise UserInputError(f"start {start.isoformat()} has no UTC offset; add one, e.g. 'Z' or '+01:00'")
    # The due time may lie years after the start (SEARCH_LIMIT): keep clear of datetime's end.
    within_reach(start, "start")
    if start + SEARCH_LIMIT >= LATEST:
        raise UserInputError(f"start {format_utc(start)} is out of range: give an instant before "
                             f"{(LATEST - SEARCH_LIMIT).year}")


def working_time(schedule: Schedule, start: datetime, end: datetime) -> timedelta:
    """The working time between ``start`` and ``end`` (at most `MAX_SPAN` apart)."""
    _check_start(start)
    if end < start:
        raise UserInputError(f"end ({format_utc(end)}) is before start ({format_utc(start)})")
    if end - start > MAX_SPAN:
        raise UserInputError(f"start and end are at most {MAX_SPAN.days} days apart")
    return sum((high - low for low, high in working_periods(schedule, start, end)), timedelta(0))


def add_working_time(schedule: Schedule, start: datetime, duration: timedelta) -> datetime:
    """The first instant at which ``duration`` of working time after ``start`` is used up
    (``duration`` at most `MAX_SPAN`)."""
    _check_start(start)
    if duration < timedelta(0):
        raise UserInputError("the working time to add must not be negative")
    if duration > MAX_SPAN:
        raise UserInputError(f"at most {MAX_SPAN.days} days of working time can be added")
    if schedule.round_the_clock:
        return start + duration
    left = duration
    if left == timedelta(0):
        return start
    # A year at a time: periods are generated only as far as they are needed.
    cursor = start
    while cursor < start + SEARCH_LIMIT:
        step_end = min(cursor + timedelta(days=366), start + SEARCH_LIMIT)
        for low, high in working_periods(schedule, cursor, step_end):
            if high - low >= left:
                return low + left
            left -= high - low
        cursor = step_end
    raise UserInputError(f"the schedule has less than {duration} of working time in the "
                         f"{SEARCH_LIMIT.days} days after {format_utc(start)}")
