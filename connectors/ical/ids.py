"""Event ids of iCalendar events, and the window to look one event up in.

A non-recurring event's id is its UID; an occurrence of a series is
``<uid>/<recurrence instant>``, the instant written ``20261224T090000Z`` (UTC) for timed
series and ``20261224`` for all-day ones. Ids are stable when an occurrence is moved,
because the instant is the RECURRENCE-ID, not the new start. Cursors store many ids, so
`pack_ids` writes a series' UID once for all its occurrences.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from syncd.core.calendars import SyncWindow

__all__ = [
    "all_of_time",
    "format_instant",
    "instant_key",
    "instant_time",
    "lookup_window",
    "occurrence_id",
    "pack_ids",
    "parse_instant",
    "split_event_id",
    "unpack_ids",
]

_INSTANT_RE = re.compile(r"^\d{8}(T\d{6}Z)?$")


def format_instant(value: date | datetime) -> str:
    """A recurrence instant as written in event ids: ``20261224`` or ``20261224T090000Z``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a recurrence instant needs a time zone")
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def instant_key(value: date | datetime, all_day_series: bool) -> str:
    """The recurrence instant of an occurrence, as written in its event id."""
    if isinstance(value, datetime):
        if all_day_series:
            # Exchange writes RECURRENCE-ID;TZID=...:20260226T000000 against DATE series
            return value.strftime("%Y%m%d")
        return format_instant(value)
    return value.strftime("%Y%m%d")


def parse_instant(text: str) -> date | datetime:
    """The instant of an event id: a date, or a UTC time."""
    if len(text) == 8:
        return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).date()
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def occurrence_id(uid: str, instant: date | datetime) -> str:
    return f"{uid}/{format_instant(instant)}"


def split_event_id(event_id: str) -> tuple[str, str | None]:
    """``uid/instant`` -> (uid, instant text); a plain UID -> (uid, None)."""
    uid, sep, tail = event_id.rpartition("/")
    if sep and uid and _INSTANT_RE.match(tail):
        return uid, tail
    return event_id, None


def pack_ids(ids: tuple[str, ...]) -> list[object]:
    """Event ids (for a cursor) with the occurrences of one series as ``[uid, instant, ...]``: a series with
    hundreds of occurrences should not repeat its UID hundreds of times in the cursor."""
    packed: list[object] = []
    series: dict[str, list[str]] = {}
    for event_id in ids:
        uid, instant = split_event_id(event_id)
        if instant is None:
            packed.append(event_id)
            continue
        if uid not in series:
            series[uid] = [uid]
            packed.append(series[uid])
        series[uid].append(instant)
    return packed


def unpack_ids(packed: object) -> tuple[str, ...]:
    if not isinstance(packed, list):
        raise ValueError("ids")
    ids: list[str] = []
    for item in packed:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, list) and item and all(isinstance(i, str) for i in item):
            ids.extend(f"{item[0]}/{instant}" for instant in item[1:])
        else:
            raise ValueError("ids")
    return tuple(ids)


def instant_time(instant: str) -> datetime:
    if len(instant) == 8:
        return datetime.strptime(instant, "%Y%m%d").replace(tzinfo=UTC)
    return datetime.strptime(instant, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def lookup_window(last: SyncWindow | None, instant: str | None = None) -> SyncWindow:
    """The window to read one event in: the calendar's last listed window (or the default
    one), moved to the occurrence's instant when that lies outside it."""
    window = last
    if window is None:
        now = datetime.now(UTC)
        window = SyncWindow(now - timedelta(days=30), now + timedelta(days=365), "UTC")
    if instant is not None:
        at = instant_time(instant)
        if not window.start <= at < window.end:
            window = SyncWindow(at - timedelta(days=2), at + timedelta(days=2), window.timezone)
    return window


def all_of_time(timezone: str) -> SyncWindow:
    """All of time, for looking up one single event wherever it was moved."""
    return SyncWindow(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC), timezone)
