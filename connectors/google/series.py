"""Recurring OOO events: a Google series as iCalendar, and its occurrences in the sync window.

Recurring OOO events come as a master (``recurrence`` lines) plus exceptions
(``recurringEventId``/``originalStartTime``; cancelled instances are exceptions too).
They are expanded here, inside the sync window, with the same iCalendar code as the local
and CalDAV connectors, so with the same bounds on hostile rules (`connectors.ical.walks`: a
series too costly to expand is skipped with one warning); an occurrence's event id is
Google's instance id ``<master id>_<original start>``, which the API accepts for get, patch
and delete. Only single-line RRULE, EXRULE, RDATE and EXDATE strings are taken from
``recurrence``: a line break inside one would add other components (a VTIMEZONE, more
events) to the object read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from connectors import ical
from connectors.google.mapping import is_ooo, read_point, split_instance_id, updated_at
from syncd.core.calendars import OooRules, RemoteEvent, SyncWindow
from syncd.core.time import zone

__all__ = ["Series", "expand_series", "series_calendar"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Series:
    """A recurring event as a listing showed it: the master and the exceptions listed."""

    master: dict[str, Any] | None = None
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    gone: bool = False  # the master was deleted


def _ical_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _ical_point(name: str, point: Mapping[str, Any]) -> str:
    value = read_point(point, name.lower())
    if not isinstance(value, datetime):
        return f"{name};VALUE=DATE:{value:%Y%m%d}"
    tz_name = point.get("timeZone")
    if tz_name:
        return f"{name};TZID={tz_name}:{value.astimezone(zone(str(tz_name))):%Y%m%dT%H%M%S}"
    return f"{name}:{value.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def series_calendar(master: Mapping[str, Any], exceptions: Iterable[Mapping[str, Any]]) -> bytes:
    """A Google recurring event and its exceptions as one iCalendar object (UID = master id)."""
    uid = str(master["id"])
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{ical.PRODID}", "BEGIN:VEVENT", f"UID:{uid}",
             _ical_point("DTSTART", master["start"]), _ical_point("DTEND", master["end"]),
             f"SUMMARY:{_ical_text(str(master.get('summary') or ''))}", "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]
    lines += _recurrence_lines(master.get("recurrence"))
    overrides: list[str] = []
    for exc in exceptions:
        original = exc.get("originalStartTime")
        if not isinstance(original, Mapping):
            continue
        if exc.get("status") == "cancelled":
            lines.append(_ical_point("EXDATE", original))
            continue
        overrides += ["BEGIN:VEVENT", f"UID:{uid}", _ical_point("RECURRENCE-ID", original),
                      _ical_point("DTSTART", exc["start"]), _ical_point("DTEND", exc["end"]),
                      f"SUMMARY:{_ical_text(str(exc.get('summary') or ''))}", "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
                      "END:VEVENT"]
    lines += ["END:VEVENT", *overrides, "END:VCALENDAR", ""]
    return "\r\n".join(lines).encode()


def _recurrence_lines(recurrence: object) -> list[str]:
    """The RRULE/EXRULE/RDATE/EXDATE strings of ``recurrence``, each one content line, else left out."""
    if not isinstance(recurrence, list | tuple):
        return []
    lines = [str(rule) for rule in recurrence]
    return [line for line in lines if not any(c in line for c in "\r\n\0")
            and line.split(":")[0].split(";")[0] in ("RRULE", "EXRULE", "RDATE", "EXDATE")]


def _original_instant(exception: Mapping[str, Any]) -> str | None:
    original = exception.get("originalStartTime")
    if not isinstance(original, Mapping):
        return split_instance_id(str(exception.get("id", "")))[1]
    value = read_point(original, "original start")
    return ical.format_instant(value)


def expand_series(series: Series, window: SyncWindow, limits: ical.ExpansionLimits) -> list[RemoteEvent]:
    """The OOO occurrences of a series inside the window, with Google instance ids."""
    master = series.master
    if master is None or series.gone or not is_ooo(master):
        return []
    parsed = ical.parse_ooo_events(series_calendar(master, series.exceptions), window, OooRules(all_events=True),
                                   etag=str(master.get("etag") or ""), fallback_updated=updated_at(master),
                                   limits=limits)
    for problem in parsed.problems:
        log.warning("google event %s: %s", master.get("id"), problem)
    own = {_original_instant(e): e for e in series.exceptions}
    events = []
    for event in parsed.events:
        uid, instant = ical.split_event_id(event.event_id)
        if instant is None:  # a series whose rule yields only its first date
            instant = ical.format_instant(read_point(master["start"], "start"))
        exception = own.get(instant)
        source = exception or master
        events.append(replace(event, event_id=f"{uid}_{instant}", etag=str(source.get("etag") or ""),
                              updated=updated_at(source), series_id=uid, block_id=None))
    return events
