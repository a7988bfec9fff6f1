"""The mailbox's working hours (``mailboxSettings/workingHours``): the `WorkingHoursSource` capability.

Graph keeps one set of hours per mailbox: the days of the week worked, one start and one end
time of day, and the zone they are in (``timeZone``: a Windows name such as ``W. Europe
Standard Time``, an IANA name, or a ``customTimeZone`` with its own name). Windows names are
mapped to IANA with the CLDR ``windowsZones`` table as tzlocal ships it. A custom zone is
accepted only when its name is one of those; its bias and transition rules are not rebuilt
here, so an unnamed one is reported as unreadable and the config's hours apply.

There are no change notifications for mailbox settings: the caller re-reads them on a timer.
Many mailboxes are read through ``$batch`` (app-only sign-in), 20 per request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz

from connectors.outlook.client import segment, translate
from connectors.outlook.options import MAX_BATCH
from connectors.outlook.replies import RepliesPart
from syncd.core.errors import BadEventData, SyncdError
from syncd.core.hours import CalendarHours

__all__ = ["HoursPart", "iana_zone", "working_hours_of"]

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Edm.TimeOfDay: 08:00:00, 08:00:00.0000000
_TIME_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d{1,12})?)?")
_WINDOWS = {name.lower(): iana for name, iana in win_tz.items()}


def iana_zone(name: object) -> str:
    """The IANA name of a Graph zone name (Windows or IANA); `BadEventData` if unknown."""
    text = " ".join(str(name or "").split())[:200]
    for candidate in (text, _WINDOWS.get(text.lower(), "")):
        if not candidate:
            continue
        try:
            ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return candidate
    raise BadEventData(f"unknown time zone {text!r}")


def _time_of_day(value: object, what: str) -> time:
    match = _TIME_RE.fullmatch(str(value or ""))
    if match is None:
        raise BadEventData(f"{what} {str(value)[:40]!r} is not a time of day")
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def working_hours_of(data: Mapping[str, Any]) -> CalendarHours | None:
    """A ``workingHours`` object as calendar hours; None when it names no working day.

    Raises `BadEventData` for an unknown zone, an unknown day or an end not after the start
    (Graph has no overnight hours: the end is on the same day)."""
    if not isinstance(data, Mapping):
        raise BadEventData("workingHours is not an object")
    days = data.get("daysOfWeek") or []
    if not isinstance(days, list) or len(days) > len(_DAYS):
        raise BadEventData("workingHours.daysOfWeek is not a list of weekdays")
    weekdays = set()
    for day in days:
        if str(day).lower() not in _DAYS:
            raise BadEventData(f"workingHours.daysOfWeek: unknown day {str(day)[:20]!r}")
        weekdays.add(_DAYS.index(str(day).lower()))
    if not weekdays:
        return None
    start = _time_of_day(data.get("startTime"), "workingHours.startTime")
    end = _time_of_day(data.get("endTime"), "workingHours.endTime")
    if end <= start:
        raise BadEventData(f"workingHours end {end:%H:%M} is not after the start {start:%H:%M}")
    zone_data = data.get("timeZone")
    name = zone_data.get("name") if isinstance(zone_data, Mapping) else None
    try:
        tz_name = iana_zone(name)
    except BadEventData as exc:
        custom = isinstance(zone_data, Mapping) and "customtimezone" in str(zone_data.get("@odata.type", "")).lower()
        raise BadEventData(f"workingHours: {exc}{' (a custom time zone)' if custom else ''}") from None
    return CalendarHours({day: ((start, end),) for day in sorted(weekdays)}, tz_name)


class HoursPart(RepliesPart):
    """`working_hours_many`: each mailbox's ``workingHours``, in ``$batch`` requests where it can."""

    def working_hours_many(self, calendars: Sequence[str], now: datetime) -> list[CalendarHours | None | Exception]:
        results: list[CalendarHours | None | Exception] = [None] * len(calendars)
        paths: dict[int, tuple[str, str]] = {}  # index -> (owner, path)
        for i, calendar in enumerate(calendars):
            try:
                owner, _calendar_id = self._split(calendar)
                paths[i] = (owner, f"/users/{segment(owner, 'user')}/mailboxSettings/workingHours")
            except SyncdError as exc:
                results[i] = exc
        alone = list(paths)
        if self.options.auth == "app" and self.options.batch_size > 1 and len(paths) > 1:
            size = min(self.options.batch_size, MAX_BATCH)
            keys = list(paths)
            batches = [keys[k:k + size] for k in range(0, len(keys), size)]
            alone = []
            for answers, again in self._map(lambda b: self._hours_batch(b, paths), batches):
                for i, answer in answers.items():
                    results[i] = answer
                alone += again
        for i, answer in zip(alone, self._map(lambda i: self._hours_alone(*paths[i]), alone), strict=True):
            results[i] = answer
        return results

    def _hours_alone(self, owner: str, path: str) -> CalendarHours | None | Exception:
        try:
            answer = self._call("GET", path, owner=owner, what=f"reading {owner}'s working hours")
            return working_hours_of(answer.body)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, mailbox by mailbox
            return exc

    def _hours_batch(self, keys: Sequence[int], paths: Mapping[int, tuple[str, str]]
                     ) -> tuple[dict[int, CalendarHours | None | Exception], list[int]]:
        """One ``$batch`` of mailboxes: the answers, and the keys to ask again alone (throttled
        or refused inside the batch)."""
        body = {"requests": [{"id": str(i), "method": "GET", "url": paths[i][1]} for i in keys]}
        try:
            answer = self._call("POST", "/$batch", json_body=body, what="a batch of working hours")
        except SyncdError as exc:
            return {i: exc for i in keys}, []
        out: dict[int, CalendarHours | None | Exception] = {}
        for part in answer.body.get("responses") or ():
            try:
                key = int(str(part.get("id")))
            except ValueError:
                continue
            if key not in paths or key in out:
                continue
            status = int(part.get("status") or 0)
            if status == 200:
                try:
                    out[key] = working_hours_of(part.get("body") or {})
                except BadEventData as exc:
                    out[key] = exc
            elif status not in (401, 429) and status < 500:
                out[key] = translate(status, part.get("body"), part.get("headers") or {},
                                     f"reading {paths[key][0]}'s working hours")
        return out, [i for i in keys if i not in out]
