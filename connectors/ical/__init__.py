"""iCalendar objects as OOO events: reading them, and writing the changes syncd makes.

This package owns the meaning of iCalendar data for syncd and does no file I/O. It is used
by the local, CalDAV, Google and Outlook connectors as ``from connectors import ical``:

- which VEVENTs are out of office (`is_ooo`), and turning the bytes of one iCalendar object
  into `RemoteEvent`s inside a sync window (`parse_ooo_events`): `reading`, with simple
  one-event objects read by the line scanner in `fast`;
- time zones resolved, Windows and Outlook display names mapped to IANA, each object's own
  VTIMEZONEs read with bounded work (never from icalendar's process-wide cache), floating
  times read in the user's zone: `zones`;
- recurring series expanded per UID with bounded work (`ExpansionLimits`): `recurrence`;
- every recurrence walk (RRULE, RDATE, EXRULE, VTIMEZONE rules) counted and timed from
  inside, so that a hostile rule costs a bounded part of the object's time: `walks`;
- the bytes syncd writes: a new OOO event (`new_event_bytes`), a plain event rewritten
  (`replace_event`), one occurrence overridden (`override_occurrence`) or excluded
  (`exclude_occurrence`), a UID removed (`remove_event`): `writing`;
- event ids and the window to look one up in: `ids`; loading bytes and reading the
  properties of components: `components`.

Event ids: a non-recurring event's id is its UID; an occurrence of a series is
``<uid>/<recurrence instant>``, the instant written ``20261224T090000Z`` (UTC) for timed
series and ``20261224`` for all-day ones. Ids are stable when an occurrence is moved,
because the instant is the RECURRENCE-ID, not the new start.

Real exports are messy (see ``tests/data/ics/ATTRIBUTION.md``): one broken DTSTART or RRULE
makes recurring-ical-events fail for a whole calendar, so every UID is expanded on its own
and a failure skips that UID only, reported as one line in `ParsedObject.problems`. A UID
whose recurrence is too costly to walk (``FREQ=SECONDLY`` long before the window, a rule
that never matches again, a VTIMEZONE with millions of onsets) is skipped the same way.
"""

from __future__ import annotations

from connectors.ical.ids import (
    all_of_time,
    format_instant,
    instant_time,
    lookup_window,
    occurrence_id,
    pack_ids,
    split_event_id,
    unpack_ids,
)
from connectors.ical.reading import ParsedObject, event_uids, is_ooo, parse_ooo_events
from connectors.ical.recurrence import ExpansionLimits
from connectors.ical.writing import (
    PRODID,
    exclude_occurrence,
    new_event_bytes,
    override_occurrence,
    remove_event,
    replace_event,
)
from connectors.ical.zones import _DISPLAY_NAMES as _DISPLAY_NAMES  # read by tests/connectors/ical/test_ical.py
from connectors.ical.zones import resolve_tzid

__all__ = [
    "PRODID",
    "ExpansionLimits",
    "ParsedObject",
    "all_of_time",
    "event_uids",
    "exclude_occurrence",
    "format_instant",
    "instant_time",
    "is_ooo",
    "lookup_window",
    "new_event_bytes",
    "occurrence_id",
    "override_occurrence",
    "pack_ids",
    "parse_ooo_events",
    "remove_event",
    "replace_event",
    "resolve_tzid",
    "split_event_id",
    "unpack_ids",
]
