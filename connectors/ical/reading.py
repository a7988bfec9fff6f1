"""The OOO events in the bytes of one iCalendar object, inside a sync window.

Owns which VEVENTs are out of office (`is_ooo`: the Outlook OOF markers, else the
operator's `OooRules`; never cancelled ones), and `parse_ooo_events`: simple objects go to
`connectors.ical.fast`; otherwise time zones are resolved (`connectors.ical.zones`),
recurring series expanded with bounded work (`connectors.ical.recurrence`), cancelled
occurrences dropped, and each OOO occurrence becomes a `RemoteEvent` with its event id
(`connectors.ical.ids`).

Real exports are messy (see ``tests/data/ics/ATTRIBUTION.md``): one broken DTSTART or RRULE
makes recurring-ical-events fail for a whole calendar, so every UID is expanded on its own
and a failure skips that UID only, reported as one line in `ParsedObject.problems`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

import icalendar

from connectors.ical.components import end_of, events, load, short, start_of, texts, uid_of
from connectors.ical.fast import read_simple
from connectors.ical.ids import instant_key
from connectors.ical.recurrence import Budget, ExpansionLimits, Series, expand, prepare_series
from connectors.ical.walks import WalkLimit
from connectors.ical.zones import ObjectZones, fix_times
from syncd.core.calendars import OooRules, RemoteEvent, SyncWindow
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import zone

__all__ = ["BLOCK_ID_PROPERTY", "OOF_MARKERS", "ParsedObject", "event_uids", "is_ooo", "parse_ooo_events"]

OOF_MARKERS = ("X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS")
BLOCK_ID_PROPERTY = "X-SYNCD-BLOCK-ID"


@dataclass(slots=True)
class ParsedObject:
    """The OOO events of one iCalendar object inside a window."""

    events: list[RemoteEvent] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)  # every UID in the object, OOO or not
    problems: list[str] = field(default_factory=list)  # one line per skipped event / limit hit
    # OOO events and moved occurrences that exist but lie outside the window: moved away, not gone
    outside: list[str] = field(default_factory=list)


def is_ooo(event: icalendar.cal.Component, rules: OooRules) -> bool:
    """Whether a VEVENT (or one occurrence of it) is an out-of-office period.

    The Outlook OOF markers count regardless of TRANSP; the operator's rules never count for
    transparent ("free") events; cancelled events never count.
    """
    if any(s.strip().upper() == "CANCELLED" for s in texts(event, "STATUS")):
        return False
    for marker in OOF_MARKERS:
        if any(v.strip().upper() == "OOF" for v in texts(event, marker)):
            return True
    if any(v.strip().upper() == "TRANSPARENT" for v in texts(event, "TRANSP")):
        return False
    if rules.all_events:
        return True
    wanted = {c.strip().casefold() for c in rules.categories}
    if wanted and any(c.strip().casefold() in wanted for c in texts(event, "CATEGORIES")):
        return True
    summary = " ".join(texts(event, "SUMMARY")).casefold()
    return any(k.strip() and k.strip().casefold() in summary for k in rules.keywords)


def event_uids(data: bytes, fallback_uid: str = "event") -> list[str]:
    """Every UID in an iCalendar object, in order of appearance."""
    return list(dict.fromkeys(uid_of(e) for e in events(load(data), fallback_uid)))


def parse_ooo_events(
    data: bytes,
    window: SyncWindow,
    rules: OooRules,
    *,
    etag: str,
    fallback_updated: datetime | None = None,
    fallback_uid: str = "event",
    limits: ExpansionLimits | None = None,
    only_uid: str | None = None,
    fast: bool = True,
) -> ParsedObject:
    """The OOO events of one iCalendar object that overlap ``window``.

    Raises `BadEventData` when the bytes are not iCalendar at all; a bad event (broken
    DTSTART or RRULE, unknown TZID, no length) skips that UID and adds a line to ``problems``.
    ``fallback_uid`` names events without a UID (the object's file name, say); ``only_uid``
    looks at one UID and leaves the others unexpanded. Simple one-event objects are read by
    `connectors.ical.fast` (the same answer, ~20x faster); ``fast=False`` always uses icalendar.
    """
    simple = read_simple(data, window, rules, etag=etag, fallback_updated=fallback_updated,
                         fallback_uid=fallback_uid) if fast else None
    if simple is not None and (only_uid is None or simple.uids == [only_uid]):
        return ParsedObject(events=simple.events, uids=simple.uids, outside=simple.outside)
    limits = limits or ExpansionLimits()
    cal = load(data)
    result = ParsedObject()
    budget = Budget.starting_now(limits)
    zones = ObjectZones(list(cal.walk("VTIMEZONE")), budget)
    ctx = _Context(window, rules, etag, fallback_updated, zone(window.timezone), budget, zones, result)
    groups: dict[str, list[icalendar.cal.Component]] = {}
    for event in events(cal, fallback_uid):
        groups.setdefault(uid_of(event), []).append(event)
    result.uids = list(groups)
    for uid, group in groups.items():
        # only series with something OOO are worth expanding
        if (only_uid is None or uid == only_uid) and any(is_ooo(c, rules) for c in group):
            _read_uid(uid, group, ctx)
    if ctx.budget.out_of_time:
        result.problems.append(f"expansion stopped after {limits.expand_seconds:g} s; later occurrences skipped")
    return result


@dataclass(slots=True)
class _Context:
    """What reading one object needs throughout, and where its answer goes."""

    window: SyncWindow
    rules: OooRules
    etag: str
    fallback_updated: datetime | None
    floating: tzinfo  # the zone of floating times: the user's
    budget: Budget
    zones: ObjectZones  # the object's own VTIMEZONEs
    result: ParsedObject


def _read_uid(uid: str, group: list[icalendar.cal.Component], ctx: _Context) -> None:
    """The OOO events of one UID into ``ctx.result``; any failure skips this UID only.

    A walk over its bounds (`WalkLimit`: a hostile RRULE or VTIMEZONE) skips the UID as a
    whole, never a part of its occurrences; one out of time ends the object's expansions.
    """
    result = ctx.result
    try:
        for component in group:
            fix_times(component, ctx.floating, ctx.zones)
        if any(c.get("RRULE") is not None or c.get("RDATE") is not None for c in group):
            if ctx.budget.out_of_time:
                result.problems.append(f"series {uid}: not expanded, out of time")
                return
            result.events.extend(_series_events(uid, group, ctx))
        else:
            result.events.extend(_single_events(uid, group, ctx))
    except WalkLimit as exc:
        ctx.budget.reached(exc)
        result.problems.append(f"event {uid}: {short(exc)}; skipped")
    except Exception as exc:  # noqa: BLE001 - one broken UID must not stop the others
        result.problems.append(f"event {uid}: {short(exc)}")


def _single_events(uid: str, group: list[icalendar.cal.Component], ctx: _Context) -> list[RemoteEvent]:
    """A UID without RRULE/RDATE: the event itself, or orphan overrides without a master."""
    out: list[RemoteEvent] = []
    for component in group:
        recurrence = component.get("RECURRENCE-ID")
        if recurrence is None:
            event_id, series_id = uid, None
        else:
            all_day = not isinstance(start_of(component), datetime)
            event_id, series_id = f"{uid}/{instant_key(recurrence.dt, all_day)}", uid
        if any(e.event_id == event_id for e in out) or not is_ooo(component, ctx.rules):
            continue
        content = _content(component, ctx, f"event {uid}")
        if content is None:
            continue
        if ctx.window.overlaps(content.start, content.end):
            out.append(_remote(component, content, event_id, series_id, ctx))
        else:
            ctx.result.outside.append(event_id)
    return out


def _series_events(uid: str, group: list[icalendar.cal.Component], ctx: _Context) -> list[RemoteEvent]:
    """The OOO occurrences of one recurring UID inside the window, the first ``max_occurrences``."""
    series = prepare_series(uid, group, ctx.window)
    _note_moved_out(series, ctx)
    found: dict[str, tuple[OooContent, RemoteEvent]] = {}
    reported = False
    for key, component in expand(series, ctx.budget, ctx.result.problems):
        if not is_ooo(component, ctx.rules):
            continue
        content = _content(component, ctx, None if reported else f"occurrence {uid}/{key}")
        reported = reported or content is None  # one line per series is enough
        if content is not None and ctx.window.overlaps(content.start, content.end):
            found[key] = (content, _remote(component, content, f"{uid}/{key}", uid, ctx))
    ordered = sorted(found.values(), key=lambda pair: (pair[0].start, pair[1].event_id))
    return [event for _, event in ordered[:ctx.budget.limits.max_occurrences]]


def _note_moved_out(series: Series, ctx: _Context) -> None:
    """OOO overrides moved outside the window go to ``outside``: moved away, not gone."""
    for override in series.group:
        recurrence = override.get("RECURRENCE-ID")
        if recurrence is not None and is_ooo(override, ctx.rules):
            content = _content(override, ctx, None)
            if content is not None and not ctx.window.overlaps(content.start, content.end):
                ctx.result.outside.append(f"{series.uid}/{instant_key(recurrence.dt, series.all_day)}")


def _content(component: icalendar.cal.Component, ctx: _Context, what: str | None) -> OooContent | None:
    """The OOO content of one occurrence, or None if it has none (noted as a problem
    unless ``what`` is None)."""
    start = start_of(component)
    end = end_of(component, start)
    title = " ".join(texts(component, "SUMMARY")).strip() or None
    problem = None
    if isinstance(start, datetime):
        if not isinstance(end, datetime):
            problem = "DTEND is a date but DTSTART a date-time"
        elif end.astimezone(UTC) <= start.astimezone(UTC):
            problem = "does not end after it starts (no DTEND?); an OOO period needs a length"
        else:
            return timed_content(start.astimezone(UTC), end.astimezone(UTC), title)
    elif isinstance(end, datetime) or end <= start:
        problem = f"all-day event with a bad end {end!s}"
    else:
        return all_day_content(start, end, ctx.window.timezone, title)
    if what is not None:
        ctx.result.problems.append(f"{what}: {problem}")
    return None


def _remote(
    component: icalendar.cal.Component, content: OooContent, event_id: str, series_id: str | None, ctx: _Context
) -> RemoteEvent:
    block = texts(component, BLOCK_ID_PROPERTY)
    return RemoteEvent(
        event_id=event_id,
        etag=ctx.etag,
        content=content,
        block_id=block[0].strip() if block and block[0].strip() else None,
        updated=_updated(component, ctx.fallback_updated),
        series_id=series_id,
    )


def _updated(event: icalendar.cal.Component, fallback: datetime | None) -> datetime | None:
    """The event's LAST-MODIFIED, else its DTSTAMP, in UTC; else ``fallback``."""
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        prop = event.get(name)
        if prop is not None and not isinstance(prop, list):
            when = _when(getattr(prop, "dt", None))
            if when is not None:
                return when
    return fallback


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None
