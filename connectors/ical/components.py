"""The icalendar objects under syncd's reading and writing: bytes parsed, UIDs, properties.

Owns how an iCalendar object is loaded (`load`: anything unreadable is `BadEventData`,
with event text kept out of the reason), how VEVENTs get their UIDs (a missing one gets a
stable stand-in from ``fallback_uid``), and typed access to the properties every other
module reads: texts, DTSTART, the end of an event, properties that must appear once.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

import icalendar

from syncd.core.errors import BadEventData

try:
    from icalendar.parser.ical.component import ComponentIcalParser as _ComponentIcalParser
except ImportError:  # icalendar < 7
    _ComponentIcalParser = None  # type: ignore[assignment,misc]

__all__ = ["end_of", "events", "load", "prop", "short", "single", "start_of", "texts", "uid_of"]


if _ComponentIcalParser is not None:

    class _Parser(_ComponentIcalParser):
        """icalendar's parser, less one step: a VTIMEZONE is not put in icalendar's zone cache.

        That cache is shared by the whole process and keeps the first definition of each TZID
        forever: one calendar's custom zone would be used for another's same TZID, and every
        TZID ever read would stay in memory. `connectors.ical.zones` reads each object's
        VTIMEZONEs itself; a TZID icalendar cannot resolve without them stays a naive time
        with its TZID parameter, and writes back as it was.
        """

        def handle_end_component(self, vals: str) -> None:
            if not self._stack:
                raise ValueError("END encountered without an accompanying BEGIN!")
            component = self._stack.pop()
            if not self._stack:
                self._components.append(component)
            else:
                self._stack[-1].add_component(component)

    class _Calendar(icalendar.Calendar):
        @classmethod
        def _get_ical_parser(cls, st: str | bytes) -> _ComponentIcalParser:
            return _Parser(st, cls._get_component_factory(), cls.types_factory)

    _CALENDAR: type[icalendar.Calendar] = _Calendar
else:  # icalendar < 7 parses inline: zones still land in its cache, but syncd reads its own
    _CALENDAR = icalendar.Calendar


def load(data: bytes) -> icalendar.cal.Component:
    """The VCALENDAR in ``data``; raises `BadEventData` when the bytes are not iCalendar."""
    try:
        return _CALENDAR.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, IndexError, UnicodeError, ...
        # icalendar quotes the offending line: keep event text (a SUMMARY, say) out of logs
        reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", short(exc))
        raise BadEventData(f"not an iCalendar object: {reason}") from exc


def short(exc: BaseException) -> str:
    """The first line of an error, at most 200 characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def events(cal: icalendar.cal.Component, fallback_uid: str) -> list[icalendar.cal.Component]:
    """The VEVENTs, each with a UID (a missing one gets a stable stand-in)."""
    found = list(cal.walk("VEVENT"))
    missing = 0
    for event in found:
        if not str(event.get("UID", "")).strip():
            event.pop("UID", None)
            event.add("UID", fallback_uid if missing == 0 else f"{fallback_uid}-{missing}")
            missing += 1
    return found


def uid_of(event: icalendar.cal.Component) -> str:
    return str(event["UID"]).strip()


def texts(component: icalendar.cal.Component, name: str) -> list[str]:
    """Every text value of a property (each CATEGORIES value on its own); [] if absent."""
    value = component.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in values:
        cats = getattr(item, "cats", None)
        if cats is not None:
            out.extend(str(cat) for cat in cats)
        else:
            out.append(str(item))
    return out


def prop(component: icalendar.cal.Component, name: str) -> Any:
    """A property as icalendar parsed it (its many value classes share no useful type)."""
    return component.get(name)


def start_of(component: icalendar.cal.Component) -> date | datetime:
    value = prop(component, "DTSTART").dt
    assert isinstance(value, date)
    return value


def single(event: icalendar.cal.Component, name: str) -> Any:
    """A property that may appear once; raises `BadEventData` when it appears more often."""
    value = event.get(name)
    if isinstance(value, list):
        raise BadEventData(f"{name} appears {len(value)} times")
    return value


def end_of(event: icalendar.cal.Component, start: date | datetime) -> date | datetime:
    """DTEND, else DTSTART + DURATION, else one day (all-day) or zero length (timed)."""
    end = single(event, "DTEND")
    if end is not None:
        value: date | datetime = end.dt
        return value
    duration = single(event, "DURATION")
    if duration is not None:
        moved: date | datetime = start + duration.dt
        return moved
    if isinstance(start, datetime):
        return start
    return start + timedelta(days=1)
