"""Recurring events as Google stores them: whether an instant is an occurrence of a series (RRULE/RDATE/EXDATE,
checked with dateutil), and the start and end of the occurrence an instance id names."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from dateutil.rrule import rrulestr

from tests.fakes.google_calendar.times import _point_time, _rfc3339, _zone


def _is_occurrence(recurrence: list[str], dtstart: datetime, candidate: datetime) -> bool:
    """Whether ``candidate`` is an occurrence of the series (RFC 5545: DTSTART always is one).

    Rules that dateutil cannot evaluate (e.g. a floating UNTIL on a zoned series,
    or mixed naive/aware EXDATEs) accept any instant, as the fake's contract says.
    """
    try:
        rules = rrulestr("\n".join(recurrence), dtstart=dtstart, forceset=True, unfold=True)
        rules.rdate(dtstart)
        hit = rules.after(candidate, inc=True)
    except (ValueError, TypeError, OverflowError):
        return True
    return bool(hit == candidate)


def _occurrence(master: dict[str, Any], stamp: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (start, end) of the occurrence of ``master`` named by an instance-id suffix, if real."""
    start, end = master["start"], master["end"]
    if "date" in start:
        if len(stamp) != 8:
            return None
        try:
            day = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
        except ValueError:
            return None
        first = date.fromisoformat(start["date"])
        # all-day series recur on floating dates (RFC 5545 DATE values), so naive on purpose
        floating_first = datetime(first.year, first.month, first.day)  # noqa: DTZ001
        floating_day = datetime(day.year, day.month, day.day)  # noqa: DTZ001
        if not _is_occurrence(master["recurrence"], floating_first, floating_day):
            return None
        length = date.fromisoformat(end["date"]) - first
        return {"date": day.isoformat()}, {"date": (day + length).isoformat()}
    if len(stamp) == 8:
        return None
    try:
        instant = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    zone = _zone(start)
    dtstart = _point_time(start)
    local_zone = zone or dtstart.tzinfo or UTC
    if not _is_occurrence(master["recurrence"], dtstart.astimezone(local_zone), instant):
        return None
    duration: timedelta = _point_time(end) - dtstart
    end_zone = _zone(end) or local_zone
    new_start: dict[str, Any] = {"dateTime": _rfc3339(instant.astimezone(local_zone))}
    new_end: dict[str, Any] = {"dateTime": _rfc3339((instant + duration).astimezone(end_zone))}
    if "timeZone" in start:
        new_start["timeZone"] = start["timeZone"]
    if "timeZone" in end:
        new_end["timeZone"] = end["timeZone"]
    return new_start, new_end
