"""Recurring series expanded inside a window with bounded work, whatever the input.

Owns the hostile-input bounds: `ExpansionLimits` (occurrences kept per series, wall time
per object) and how they are kept. Each stretch expanded ends where the rule's next
``max_occurrences`` starts end (read with dateutil), so no single recurring-ical-events call
can produce more than about that many occurrences however dense the rule (FREQ=SECONDLY);
a high-frequency series' DTSTART is moved close to the window on the rule's own lattice;
a COUNT rule that runs too long before the window is refused. What an occurrence means
(OOO or not, its event) is for the caller (`connectors.ical.reading`): this module only
hands out each occurrence once, with its instant as written in event ids.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dateutil.rrule
import icalendar
import recurring_ical_events

from connectors.ical.components import end_of, prop, start_of
from connectors.ical.ids import instant_key
from syncd.core.calendars import SyncWindow
from syncd.core.errors import BadEventData

__all__ = ["Budget", "ExpansionLimits", "Series", "expand", "prepare_series"]

_FREQ_STEP = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
}
# dateutil walks a rule from DTSTART; beyond this many periods before the window we move
# DTSTART forward on the rule's own lattice instead (FREQ=SECONDLY since 2001 would hang).
_MAX_PERIODS_BEFORE_WINDOW = 10_000
_MAX_PERIODS_WITH_COUNT = 2_000_000  # COUNT pins DTSTART; dateutil walks ~1 M steps a second


@dataclass(frozen=True, slots=True)
class ExpansionLimits:
    """Bounds on the work spent expanding recurring series of one iCalendar object."""

    max_occurrences: int = 1000  # per series; the first ones are kept
    expand_seconds: float = 2.0  # wall time per object
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class Budget:
    """The limits of one iCalendar object, its deadline, and whether it was reached."""

    limits: ExpansionLimits
    deadline: float
    out_of_time: bool = False

    @classmethod
    def starting_now(cls, limits: ExpansionLimits) -> Budget:
        return cls(limits, limits.clock() + limits.expand_seconds)


@dataclass(frozen=True, slots=True)
class Series:
    """One recurring UID ready to expand: its VEVENTs and the span to expand them in."""

    uid: str
    group: list[icalendar.cal.Component]  # the master (if any) and its overrides
    master: icalendar.cal.Component | None
    all_day: bool
    margin: timedelta  # around the window: all-day dates are read in the user's zone later
    lo: datetime
    hi: datetime
    length: timedelta  # of the master's occurrences


def prepare_series(uid: str, group: list[icalendar.cal.Component], window: SyncWindow) -> Series:
    """The series of ``group`` in ``window``, its DTSTART moved near the window if the rule is dense.

    Raises `BadEventData` for a COUNT rule that runs too long before the window.
    """
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    all_day = not isinstance(start_of((masters or group)[0]), datetime)
    # all-day dates are read in the user's zone later: a day of margin for every zone
    margin = timedelta(days=1) if all_day else timedelta(0)
    lo, hi = window.start - margin, window.end + margin
    length = timedelta(0)
    if master is not None:
        _shift_start(master, lo)
        start = start_of(master)
        end = end_of(master, start)
        length = abs(end - start) if type(end) is type(start) else timedelta(days=1)
    return Series(uid, group, master, all_day, margin, lo, hi, length)


def expand(
    series: Series, timezones: list[icalendar.cal.Component], budget: Budget, problems: list[str]
) -> Iterator[tuple[str, icalendar.cal.Component]]:
    """Each occurrence of the series in its span once, as (instant key, component), within the limits.

    Expands chunk by chunk: chunks grow over sparse stretches and shrink over dense ones, and
    never reach past the rule's next ``max_occurrences`` starts. Stops (with a line in
    ``problems``) once more than ``max_occurrences`` were handed out, and (with
    ``budget.out_of_time`` set) when the object's deadline has passed.
    """
    sub = icalendar.Calendar()
    for tz in timezones:
        sub.add_component(tz)
    for component in series.group:
        sub.add_component(component)
    query = recurring_ical_events.of(sub)
    limit = budget.limits.max_occurrences
    seen: set[str] = set()
    rule_bound = _rule_bound(series.master)
    span, chunk_start = timedelta(minutes=15), series.lo
    stretch = _stretch_end(series, rule_bound, series.lo, limit + 1)
    while chunk_start < series.hi:
        if budget.limits.clock() > budget.deadline:
            budget.out_of_time = True
            break
        if chunk_start >= stretch:
            wanted = limit + 1 - len(seen)
            stretch = max(_stretch_end(series, rule_bound, chunk_start, wanted), chunk_start + timedelta(seconds=1))
        chunk_end = chunk_start + min(span, stretch - chunk_start, series.hi - chunk_start)
        batch = query.between(chunk_start, chunk_end)
        for component in batch:
            key = instant_key(component["RECURRENCE-ID"].dt, series.all_day)
            if key not in seen:
                seen.add(key)
                yield key, component
        if len(seen) > limit:
            problems.append(f"series {series.uid}: more than {limit} occurrences in the window; kept the first")
            break
        span = _next_span(span, len(batch))
        chunk_start = chunk_end


def _next_span(span: timedelta, found: int) -> timedelta:
    """The next chunk's length: longer after a sparse chunk, shorter after a dense one."""
    if found < 64:
        return min(span * 2, timedelta(days=400))
    if found > 256:
        return max(span / 2, timedelta(minutes=1))
    return span


def _stretch_end(series: Series, rule_bound: _RuleBound | None, since: datetime, nth: int) -> datetime:
    """Where expanding from ``since`` may go: past the rule's ``nth`` start, no further."""
    if rule_bound is None:
        return series.hi
    bound = rule_bound.nth_after(since, nth)
    return series.hi if bound is None else min(series.hi, bound + series.length + series.margin + timedelta(seconds=1))


def _rule_bound(master: icalendar.cal.Component | None) -> _RuleBound | None:
    if master is None:
        return None
    try:
        return _RuleBound(master)
    except (ValueError, TypeError, OverflowError):
        return None  # recurring-ical-events may still read a rule dateutil refuses as is


def _rule_period(master: icalendar.cal.Component) -> timedelta | None:
    """The fixed step of a single RRULE with FREQ up to WEEKLY, else None."""
    rules = master.get("RRULE")
    if rules is None or isinstance(rules, list):
        return None
    step = _FREQ_STEP.get(str((rules.get("FREQ") or [""])[0]).upper())
    if step is None:
        return None
    interval = int((rules.get("INTERVAL") or [1])[0] or 1)
    return step * max(interval, 1)


def _shift_start(master: icalendar.cal.Component, window_start: datetime) -> None:
    """Move a high-frequency series' DTSTART close to the window, on the rule's own lattice.

    dateutil iterates from DTSTART, so FREQ=SECONDLY since 2001 would take hours before the
    first occurrence in the window. Only for a single RRULE without COUNT (COUNT counts from
    the original DTSTART) and FREQ up to WEEKLY (adding whole periods keeps BYxxx meaning).
    """
    period = _rule_period(master)
    start = start_of(master)
    if period is None or not isinstance(start, datetime):
        return
    end = end_of(master, start)
    duration = end - start if isinstance(end, datetime) else timedelta(0)
    target = window_start - duration - period
    periods = (target - start) // period
    if periods <= _MAX_PERIODS_BEFORE_WINDOW:
        return
    if prop(master, "RRULE").get("COUNT"):
        if periods > _MAX_PERIODS_WITH_COUNT:
            raise BadEventData(f"RRULE with COUNT runs {periods} periods before the window; too long to expand")
        return
    shifted = start + periods * period  # wall-clock arithmetic, like dateutil's
    while shifted > target:  # a DST change between start and target may put us past it
        shifted -= period * ((shifted - target) // period + 1)
    master["DTSTART"] = icalendar.vDDDTypes(shifted)
    if "DTEND" in master:
        master["DTEND"] = icalendar.vDDDTypes(shifted + duration)


def _until(value: object, start: date | datetime) -> date | datetime | None:
    """An RRULE's UNTIL in the form dateutil accepts with ``start``.

    Where the two disagree (a DATE against a zoned start, a UTC time against a DATE series)
    the zone is unknown here, so it is moved late enough for any zone: a superset is safe.
    """
    if not isinstance(value, date):
        return None
    slack = timedelta(hours=14)  # the largest UTC offset
    if isinstance(start, datetime) and start.tzinfo is not None:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC) + slack
        return datetime(value.year, value.month, value.day, tzinfo=UTC) + timedelta(days=1) + slack
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) + slack if value.tzinfo is not None else value
    return datetime(value.year, value.month, value.day)  # noqa: DTZ001 - floating, like start


class _RuleBound:
    """Where a series' RRULEs reach their ``nth`` start after an instant, read with dateutil.

    Expanding up to that instant touches at most ``nth`` occurrences per RRULE however dense
    the rule is, so one chunk of FREQ=SECONDLY cannot turn into millions of components.
    The rules are parsed once and cached: stretch after stretch reuses the walk so far.
    """

    def __init__(self, master: icalendar.cal.Component) -> None:
        start = start_of(master)
        self.naive = not isinstance(start, datetime) or start.tzinfo is None
        first = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)  # noqa: DTZ001
        rules = master.get("RRULE")
        self.rules: list[dateutil.rrule.rrule] = []
        for rule in [] if rules is None else rules if isinstance(rules, list) else [rules]:
            # with COUNT, UNTIL is redundant for a bound (and dateutil warns about both)
            until = None if rule.get("COUNT") else _until((rule.get("UNTIL") or [None])[0], start)
            open_rule: Any = icalendar.vRecur({k: v for k, v in rule.items() if k.upper() != "UNTIL"})
            text = open_rule.to_ical().decode()
            parsed = dateutil.rrule.rrulestr(text, dtstart=first, cache=True)
            self.rules.append(parsed.replace(until=until) if until is not None else parsed)

    def nth_after(self, after: datetime, nth: int) -> datetime | None:
        """The ``nth`` start at or after ``after`` (UTC), or None if the rules end before."""
        since = after.astimezone(UTC).replace(tzinfo=None) if self.naive else after
        nth = max(nth, 1)
        bound: datetime | None = None
        for rule in self.rules:
            last = next(itertools.islice(rule.xafter(since, count=nth, inc=True), nth - 1, None), None)
            if last is None:
                continue
            last_utc = last.astimezone(UTC) if last.tzinfo is not None else last.replace(tzinfo=UTC)
            bound = last_utc if bound is None else min(bound, last_utc)
        return bound
