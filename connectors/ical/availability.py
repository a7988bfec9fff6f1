"""RFC 7953 ``VAVAILABILITY`` as weekly working hours.

A VAVAILABILITY says its owner is busy (``BUSYTYPE``, by default ``BUSY-UNAVAILABLE``)
throughout its own span except inside its ``AVAILABLE`` sub-components: periods with their
own DTSTART/DTEND (or DURATION), zones and recurrence (usually ``FREQ=WEEKLY;BYDAY=MO,TU``).
syncd's working hours are a weekly pattern in one zone, so the AVAILABLE periods are
expanded over the seven local days from ``now`` (each weekday once) in the zone of the first
AVAILABLE's DTSTART, and each weekday gets the local ranges that fall on it. The expansion
is the bounded one of `connectors.ical.recurrence` (each AVAILABLE is read as a VEVENT with
the same times and rules), so a hostile rule costs bounded time and is refused as a whole.

Anything that cannot be read this way (no VAVAILABILITY, a TZID neither defined nor known, an
end before the start, a zone without an IANA name, a rule over its limits) raises
`BadEventData`; a VAVAILABILITY without AVAILABLE periods in that week gives None.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import icalendar

from connectors.ical.components import end_of, load, short, start_of
from connectors.ical.recurrence import expand, prepare_series
from connectors.ical.walks import Budget, ExpansionLimits, WalkLimit
from connectors.ical.zones import ObjectZones, fix_times, resolve_tzid
from syncd.core.calendars import SyncWindow
from syncd.core.errors import BadEventData
from syncd.core.hours import CalendarHours, merge_ranges

__all__ = ["MAX_AVAILABLE", "hours_from_availability"]

MAX_AVAILABLE = 200  # AVAILABLE components read per object; a week of hours needs a handful
# The properties that place an AVAILABLE in time: copied onto the VEVENT that stands in for it.
_TIME_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")


def _zone_name(component: icalendar.cal.Component) -> str:
    """The IANA name of the zone an AVAILABLE's DTSTART is written in (UTC for UTC or floating)."""
    start = component.get("DTSTART")
    if start is None:
        raise BadEventData("an AVAILABLE has no DTSTART")
    tzid = start.params.get("TZID") if hasattr(start, "params") else None
    if not tzid:
        return "UTC"
    found = resolve_tzid(str(tzid))
    if not isinstance(found, ZoneInfo):
        raise BadEventData(f"AVAILABLE time zone {str(tzid)[:60]!r} has no IANA name")
    return found.key


def _stand_in(available: icalendar.cal.Component, uid: str) -> icalendar.cal.Component:
    event = icalendar.Event()
    for name in _TIME_PROPERTIES:
        value = available.get(name)
        if value is not None:
            event[name] = value
    event.add("UID", uid)
    return event


def _add_local_ranges(days: dict[int, list[tuple[time, time]]], start: datetime, end: datetime,
                      tz: tzinfo, window: SyncWindow) -> None:
    """The local ranges of ``[start, end)`` inside the window, split at local midnights."""
    start, end = max(start, window.start), min(end, window.end)
    cursor = start.astimezone(tz)
    stop = end.astimezone(tz)
    while cursor < stop:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time(0), tzinfo=tz)
        piece_end = min(stop, midnight)
        wall_end = time.max if piece_end == midnight else piece_end.time().replace(tzinfo=None)
        wall_start = cursor.time().replace(tzinfo=None)
        if wall_start < wall_end:
            days.setdefault(cursor.weekday(), []).append((wall_start, wall_end))
        cursor = midnight


def hours_from_availability(data: bytes, now: datetime, *,
                            limits: ExpansionLimits | None = None) -> CalendarHours | None:
    """The weekly working hours in a ``calendar-availability`` value (an iCalendar object)."""
    cal = load(data)
    vavailabilities = list(cal.walk("VAVAILABILITY"))
    if not vavailabilities:
        raise BadEventData("no VAVAILABILITY in calendar-availability")
    availables = [sub for v in vavailabilities for sub in v.subcomponents if sub.name == "AVAILABLE"]
    if len(availables) > MAX_AVAILABLE:
        raise BadEventData(f"more than {MAX_AVAILABLE} AVAILABLE components")
    if not availables:
        return None
    limits = limits or ExpansionLimits(max_occurrences=50)
    budget = Budget.starting_now(limits)
    zones = ObjectZones(list(cal.walk("VTIMEZONE")), budget)
    tz_name = _zone_name(availables[0])
    tz = ZoneInfo(tz_name)
    first_day = now.astimezone(tz).date()
    window = SyncWindow(datetime.combine(first_day, time(0), tzinfo=tz).astimezone(UTC),
                        datetime.combine(first_day + timedelta(days=7), time(0), tzinfo=tz).astimezone(UTC), tz_name)
    days: dict[int, list[tuple[time, time]]] = {}
    for vavailability in vavailabilities:
        # The VAVAILABILITY's own span, if it has one, bounds its AVAILABLE periods.
        span = icalendar.Event()
        for name in ("DTSTART", "DTEND", "DURATION"):
            if vavailability.get(name) is not None:
                span[name] = vavailability.get(name)
        span_start, span_end = window.start, window.end
        try:
            if span.get("DTSTART") is not None:
                fix_times(span, tz, zones)
                lo = start_of(span)
                hi = end_of(span, lo) if (span.get("DTEND") or span.get("DURATION")) is not None else None
                if isinstance(lo, datetime):
                    span_start = max(span_start, lo)
                if isinstance(hi, datetime) and hi != lo:
                    span_end = min(span_end, hi)
        except BadEventData as exc:
            raise BadEventData(f"VAVAILABILITY: {short(exc)}") from None
        if span_start >= span_end:
            continue
        bounded = SyncWindow(span_start, span_end, tz_name)
        for n, available in enumerate(a for a in vavailability.subcomponents if a.name == "AVAILABLE"):
            _read_available(available, f"available-{n}", bounded, tz, zones, budget, days)
    if not days:
        return None
    return CalendarHours({day: merge_ranges(ranges) for day, ranges in sorted(days.items())}, tz_name)


def _read_available(available: icalendar.cal.Component, uid: str, window: SyncWindow, tz: ZoneInfo,
                    zones: ObjectZones, budget: Budget, days: dict[int, list[tuple[time, time]]]) -> None:
    event = _stand_in(available, uid)
    try:
        fix_times(event, tz, zones)
        start = start_of(event)
        end = end_of(event, start)
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise BadEventData("AVAILABLE periods need times, not dates")
        if end <= start:
            raise BadEventData(f"an AVAILABLE ends ({end.isoformat()}) before it starts ({start.isoformat()})")
        if event.get("RRULE") is None and event.get("RDATE") is None:
            _add_local_ranges(days, start, end, tz, window)
            return
        problems: list[str] = []
        series = prepare_series(uid, [event], window)
        for _key, occurrence in expand(series, budget, problems):
            o_start = start_of(occurrence)
            o_end = end_of(occurrence, o_start)
            if isinstance(o_start, datetime) and isinstance(o_end, datetime):
                _add_local_ranges(days, o_start, o_end, tz, window)
        if problems or budget.out_of_time:
            raise BadEventData(f"AVAILABLE recurrence: {problems[0] if problems else 'out of time'}")
    except WalkLimit as exc:
        raise BadEventData(f"AVAILABLE recurrence refused: {short(exc)}") from None
    except BadEventData:
        raise
    except Exception as exc:  # noqa: BLE001 - icalendar and dateutil raise many kinds on bad input
        raise BadEventData(f"AVAILABLE unreadable: {short(exc)}") from None
