"""The iCalendar bytes syncd writes: new OOO events, and its changes to existing objects.

Owns `new_event_bytes` (a VCALENDAR with one OOO event carrying syncd's block id),
`replace_event` (a plain event rewritten), `override_occurrence` (one occurrence of a
series overridden with a RECURRENCE-ID component) and `exclude_occurrence` (one occurrence
deleted with an EXDATE), and `remove_event` (a plain event's UID dropped). Every change
keeps the properties syncd does not own; occurrences are addressed by the instant of their
event id (`connectors.ical.ids`), matched against stored values whatever their form.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

import icalendar

from connectors.ical.components import events, load, prop, start_of, uid_of
from connectors.ical.ids import instant_key, parse_instant
from connectors.ical.reading import BLOCK_ID_PROPERTY, is_ooo
from connectors.ical.zones import ObjectZones, localize
from syncd.core.calendars import EventDraft, OooRules
from syncd.core.errors import BadEventData, NotFound
from syncd.core.ooo import OooContent

__all__ = ["PRODID", "exclude_occurrence", "new_event_bytes", "override_occurrence", "remove_event", "replace_event"]

PRODID = "-//syncd//syncd//EN"
# What a new override does not copy from its master: recurrence and times are its own.
_NOT_COPIED = {"RRULE", "RDATE", "EXDATE", "EXRULE", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "SEQUENCE"}


def new_event_bytes(uid: str, draft: EventDraft, now: datetime) -> bytes:
    """A VCALENDAR holding the one OOO event syncd writes for a block."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    event = icalendar.Event()
    event.add("UID", uid)
    _stamp(event, now)
    event.add("SUMMARY", draft.content.title)
    _set_times(event, draft.content)
    event.add("TRANSP", "OPAQUE")
    event.add("X-MICROSOFT-CDO-BUSYSTATUS", "OOF")
    event.add(BLOCK_ID_PROPERTY, draft.block_id)
    cal.add_component(event)
    return bytes(cal.to_ical())


def replace_event(
    data: bytes, uid: str, draft: EventDraft, now: datetime, rules: OooRules, *, fallback_uid: str = "event"
) -> bytes:
    """Rewrite a non-recurring event's times, title and block id. Raises `NotFound`."""
    cal = load(data)
    masters = [e for e in _group(cal, uid, fallback_uid) if e.get("RECURRENCE-ID") is None]
    if not masters:
        raise NotFound(f"no event with UID {uid!r}")
    if _is_series(masters[0]):
        raise NotFound(f"{uid!r} is a recurring series; address one occurrence as {uid}/<instant>")
    _apply_draft(masters[0], draft, rules, now)
    return bytes(cal.to_ical())


def override_occurrence(
    data: bytes,
    uid: str,
    instant: str,
    draft: EventDraft,
    now: datetime,
    rules: OooRules,
    floating: tzinfo,
    *,
    fallback_uid: str = "event",
) -> bytes:
    """Add or replace the RECURRENCE-ID override of one occurrence. Raises `NotFound`.

    A new override starts as a copy of the master's properties (title, OOF marker,
    categories...) with the draft's times, title and block id.
    """
    cal = load(data)
    group = _group(cal, uid, fallback_uid)
    if not group:
        raise NotFound(f"no event with UID {uid!r}")
    all_day = _all_day_series(group)
    zones = ObjectZones(list(cal.walk("VTIMEZONE")))
    override = _override_for(group, instant, all_day, floating, zones)
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    if override is None:
        if master is None or not _is_series(master):
            raise NotFound(f"{uid}/{instant} is not an occurrence of a series")
        if _excluded(master, instant, all_day, floating, zones):
            raise NotFound(f"occurrence {uid}/{instant} was deleted")
        override = icalendar.Event()
        for name, value in master.property_items(recursive=False):
            if name not in ("BEGIN", "END") and name not in _NOT_COPIED:
                override.add(name, value, encode=False)
        override.add("RECURRENCE-ID", _recurrence_value(master, instant, floating))
        override.add("SEQUENCE", 0)
        cal.add_component(override)
    _apply_draft(override, draft, rules, now)
    return bytes(cal.to_ical())


def exclude_occurrence(
    data: bytes, uid: str, instant: str, now: datetime, floating: tzinfo, *, fallback_uid: str = "event"
) -> bytes | None:
    """Delete one occurrence: EXDATE on the master, its override dropped.

    None when there is nothing to delete (no such UID, or already excluded); ``b""`` when no
    VEVENT is left (the caller removes the object).
    """
    cal = load(data)
    group = _group(cal, uid, fallback_uid)
    if not group:
        return None
    all_day = _all_day_series(group)
    zones = ObjectZones(list(cal.walk("VTIMEZONE")))
    override = _override_for(group, instant, all_day, floating, zones)
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    changed = False
    if override is not None:
        cal.subcomponents.remove(override)
        changed = True
    if master is not None and _is_series(master) and not _excluded(master, instant, all_day, floating, zones):
        master.add("EXDATE", _recurrence_value(master, instant, floating))
        _stamp(master, now)
        changed = True
    if not changed:
        return None
    if not list(cal.walk("VEVENT")):
        return b""
    return bytes(cal.to_ical())


def remove_event(data: bytes, uid: str, *, fallback_uid: str = "event") -> bytes | None:
    """Drop a non-recurring event (every VEVENT of its UID).

    None if there is no such event, or the UID is a recurring series (its id is never the
    plain UID); ``b""`` when no VEVENT is left (the caller removes the object).
    """
    cal = load(data)
    group = _group(cal, uid, fallback_uid)
    if not group or any(_is_series(c) for c in group):
        return None
    cal.subcomponents = [c for c in cal.subcomponents if not any(c is g for g in group)]
    if not list(cal.walk("VEVENT")):
        return b""
    return bytes(cal.to_ical())


# -- properties syncd sets ------------------------------------------------------------------


def _set(component: icalendar.cal.Component, name: str, value: object) -> None:
    component.pop(name, None)
    component.add(name, value)


def _set_times(component: icalendar.cal.Component, content: OooContent) -> None:
    for name in ("DTSTART", "DTEND", "DURATION"):
        component.pop(name, None)
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        component.add("DTSTART", content.start_date)
        component.add("DTEND", content.end_date)
    else:
        component.add("DTSTART", content.start.astimezone(UTC))
        component.add("DTEND", content.end.astimezone(UTC))


def _stamp(component: icalendar.cal.Component, now: datetime) -> None:
    now = now.astimezone(UTC).replace(microsecond=0)
    _set(component, "DTSTAMP", now)
    _set(component, "LAST-MODIFIED", now)


def _apply_draft(component: icalendar.cal.Component, draft: EventDraft, rules: OooRules, now: datetime) -> None:
    """Times, title and block id from the draft; every other property stays as it was."""
    _set_times(component, draft.content)
    _set(component, "SUMMARY", draft.content.title)
    _set(component, BLOCK_ID_PROPERTY, draft.block_id)
    _stamp(component, now)
    sequence = component.get("SEQUENCE")
    try:
        _set(component, "SEQUENCE", int(sequence) + 1 if sequence is not None else 0)
    except (TypeError, ValueError):
        pass
    if not is_ooo(component, rules):
        # e.g. it was OOO by a summary keyword that the new title lacks
        _set(component, "X-MICROSOFT-CDO-BUSYSTATUS", "OOF")


# -- finding the components of one event or occurrence ---------------------------------------


def _group(cal: icalendar.cal.Component, uid: str, fallback_uid: str) -> list[icalendar.cal.Component]:
    return [e for e in events(cal, fallback_uid) if uid_of(e) == uid]


def _is_series(event: icalendar.cal.Component) -> bool:
    return event.get("RRULE") is not None or event.get("RDATE") is not None


def _all_day_series(group: list[icalendar.cal.Component]) -> bool:
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    return not isinstance(start_of((masters or group)[0]), datetime)


def _raw_instant(
    value: object, params: dict[str, str], all_day_series: bool, floating: tzinfo, zones: ObjectZones
) -> str | None:
    """The id instant of a RECURRENCE-ID/EXDATE value as stored (naive times resolved)."""
    if not isinstance(value, date):
        return None
    try:
        fixed = localize(value, params.get("TZID"), floating, zones)
    except BadEventData:
        return None
    assert isinstance(fixed, date)
    return instant_key(fixed, all_day_series)


def _recurrence_value(
    master: icalendar.cal.Component, instant: str, floating: tzinfo
) -> date | datetime:
    """The RECURRENCE-ID/EXDATE value for an instant, in the form the master's DTSTART uses."""
    start_prop = prop(master, "DTSTART")
    start = start_prop.dt
    parsed = parse_instant(instant)
    if not isinstance(start, datetime):
        if isinstance(parsed, datetime):
            raise NotFound(f"instant {instant} is a time but the series is all-day")
        return parsed
    if not isinstance(parsed, datetime):
        raise NotFound(f"instant {instant} is a date but the series is timed")
    if start.tzinfo is None and not start_prop.params.get("TZID"):
        return parsed.astimezone(floating).replace(tzinfo=None)  # floating series
    return parsed  # UTC matches a TZID series too (RFC 5545 3.8.4.4)


def _override_for(
    group: list[icalendar.cal.Component], instant: str, all_day_series: bool, floating: tzinfo, zones: ObjectZones
) -> icalendar.cal.Component | None:
    for component in group:
        recurrence = component.get("RECURRENCE-ID")
        if recurrence is not None and not isinstance(recurrence, list):
            if _raw_instant(recurrence.dt, recurrence.params, all_day_series, floating, zones) == instant:
                return component
    return None


def _excluded(
    master: icalendar.cal.Component, instant: str, all_day_series: bool, floating: tzinfo, zones: ObjectZones
) -> bool:
    value = master.get("EXDATE")
    if value is None:
        return False
    for lst in value if isinstance(value, list) else [value]:
        for item in lst.dts:
            if _raw_instant(item.dt, lst.params, all_day_series, floating, zones) == instant:
                return True
    return False
