"""Recurring series expanded inside a window with bounded work, whatever the input.

Owns the hostile-input bounds of a series: `ExpansionLimits` (occurrences kept per series,
wall time per object) and how they are kept. Each stretch expanded ends where the rule's next
``max_occurrences`` starts end (read with dateutil), so no single recurring-ical-events call
can produce more than about that many occurrences however dense the rule (FREQ=SECONDLY);
a high-frequency series' DTSTART is moved close to the window on the rule's own lattice;
a COUNT rule that runs too long before the window is refused. Every walk (our reading of the
RRULEs and RDATEs, recurring-ical-events' expansion) is counted and timed from inside
(`connectors.ical.walks`): a series whose walks go over their steps is refused as a whole
(`WalkLimit`), so a rule that never matches or matches every second long before the window
costs a bounded fraction of the object's time. What an occurrence means (OOO or not, its
event) is for the caller (`connectors.ical.reading`): this module only hands out each
occurrence once, with its instant as written in event ids.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dateutil.rrule
import icalendar
import recurring_ical_events

from connectors.ical.components import end_of, prop, start_of
from connectors.ical.ids import instant_key
from connectors.ical.walks import Budget, ExpansionLimits, WalkMeter, bounded_walk
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
_MAX_PERIODS_WITH_COUNT = 40_000  # COUNT pins DTSTART: walking this far stays within _SCAN_STEPS
# Steps (Python calls, see `connectors.ical.walks`) one series may spend. dateutil takes 5 to
# 15 a start, so reading the RRULEs and RDATEs may walk some 50,000 starts (a DAILY rule
# since 1890, two since 1960): about 0.3 s, a fraction of the object's `expand_seconds`.
# recurring-ical-events takes ~1,000 per occurrence it builds, and walks the rules again.
_SCAN_STEPS = 500_000
_EXPAND_STEPS = 1_000_000
_STEPS_PER_OCCURRENCE = 3_000


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


def expand(series: Series, budget: Budget, problems: list[str]) -> Iterator[tuple[str, icalendar.cal.Component]]:
    """Each occurrence of the series in its span once, as (instant key, component), within the limits.

    Expands chunk by chunk: chunks grow over sparse stretches and shrink over dense ones, and
    never reach past the rule's next ``max_occurrences`` starts. Stops (with a line in
    ``problems``) once more than ``max_occurrences`` were handed out, and (with
    ``budget.out_of_time`` set) when the object's deadline has passed. Raises `WalkLimit`
    when reading the rules or expanding them goes over the series' steps or the deadline.
    """
    sub = icalendar.Calendar()
    for component in series.group:
        sub.add_component(component)
    limit = budget.limits.max_occurrences
    expansion = budget.meter(_EXPAND_STEPS + _STEPS_PER_OCCURRENCE * (limit + 1), "recurrence")
    with bounded_walk(expansion):
        query = recurring_ical_events.of(sub)
    seen: set[str] = set()
    rule_bound = _rule_bound(series.master, budget.meter(_SCAN_STEPS, "recurrence"))
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
        with bounded_walk(expansion):  # never across a yield: the hook is this thread's
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


def _rule_bound(master: icalendar.cal.Component | None, meter: WalkMeter) -> _RuleBound | None:
    if master is None:
        return None
    try:
        return _RuleBound(master, meter)
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


class _Starts:
    """The starts of one rule (or of the RDATEs) in order, each read once.

    Asked with ever later instants (the expansion moves forward), it keeps only the starts
    not yet passed that were asked for: memory stays within ``nth``, and dateutil walks each
    stretch of the rule once, not from DTSTART on every question.
    """

    def __init__(self, starts: Iterable[datetime]) -> None:
        self._source = iter(starts)
        self._ahead: deque[datetime] = deque()
        self._done = False

    def nth_after(self, since: datetime, nth: int) -> datetime | None:
        """The ``nth`` start at or after ``since``, or None if fewer are left."""
        while self._ahead and self._ahead[0] < since:
            self._ahead.popleft()
        while len(self._ahead) < nth and not self._done:
            start = next(self._source, None)
            if start is None:
                self._done = True
            elif start >= since:
                self._ahead.append(start)
        return self._ahead[nth - 1] if len(self._ahead) >= nth else None


class _RuleBound:
    """Where a series' RRULEs and RDATEs reach their ``nth`` start after an instant, read with dateutil.

    Expanding up to that instant touches at most ``nth`` occurrences per RRULE however dense
    the rule is, so one chunk of FREQ=SECONDLY cannot turn into millions of components.
    Every walk is counted against ``meter`` (`WalkLimit` when it is spent).
    """

    def __init__(self, master: icalendar.cal.Component, meter: WalkMeter) -> None:
        self.meter = meter
        start = start_of(master)
        self.naive = not isinstance(start, datetime) or start.tzinfo is None
        first = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)  # noqa: DTZ001
        rules = master.get("RRULE")
        self.rules: list[_Starts] = []
        with bounded_walk(meter):  # a rule's BYxxx sets are built here, and may be large
            for rule in [] if rules is None else rules if isinstance(rules, list) else [rules]:
                # with COUNT, UNTIL is redundant for a bound (and dateutil warns about both)
                until = None if rule.get("COUNT") else _until((rule.get("UNTIL") or [None])[0], start)
                open_rule: Any = icalendar.vRecur({k: v for k, v in rule.items() if k.upper() != "UNTIL"})
                text = open_rule.to_ical().decode()
                parsed = dateutil.rrule.rrulestr(text, dtstart=first)
                self.rules.append(_Starts(parsed.replace(until=until) if until is not None else parsed))
            rdates = sorted(self._points(_rdate_values(master)))
            if rdates:
                self.rules.append(_Starts(rdates))

    def _points(self, values: Iterable[object]) -> Iterator[datetime]:
        """RDATE values as instants comparable with the rule's starts."""
        for value in values:
            point = value[0] if isinstance(value, tuple) else value
            if isinstance(point, datetime):
                if self.naive:
                    yield point.astimezone(UTC).replace(tzinfo=None) if point.tzinfo is not None else point
                else:
                    yield point if point.tzinfo is not None else point.replace(tzinfo=UTC)
            elif isinstance(point, date):
                midnight = datetime(point.year, point.month, point.day)  # noqa: DTZ001 - floating, like start
                yield midnight if self.naive else midnight.replace(tzinfo=UTC)

    def nth_after(self, after: datetime, nth: int) -> datetime | None:
        """The ``nth`` start at or after ``after`` (UTC), or None if the rules end before."""
        since = after.astimezone(UTC).replace(tzinfo=None) if self.naive else after
        nth = max(nth, 1)
        bound: datetime | None = None
        with bounded_walk(self.meter):
            for rule in self.rules:
                last = rule.nth_after(since, nth)
                if last is None:
                    continue
                last_utc = last.astimezone(UTC) if last.tzinfo is not None else last.replace(tzinfo=UTC)
                bound = last_utc if bound is None else min(bound, last_utc)
        return bound


def _rdate_values(master: icalendar.cal.Component) -> Iterator[object]:
    value = master.get("RDATE")
    for lst in [] if value is None else value if isinstance(value, list) else [value]:
        for item in getattr(lst, "dts", []):
            yield item.dt
