"""Recurring series: the JSON ``patternedRecurrence`` as a dateutil rule, the occurrences and exceptions of a series
(ids ``{master}_OCC{YYYYMMDDTHHMMSSZ}``), and the instances a calendar window holds."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dateutil import rrule

from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.graph.common import GraphError
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import zone


class RecurrenceMixin(FakeGraphBase):
    """Expands series masters into instances (occurrences, exceptions) for views, deltas and single-instance ids."""

    def _rule(self, master: dict[str, Any]) -> rrule.rrule:
        recurrence = master.get("recurrence")
        if not isinstance(recurrence, dict):
            raise GraphError(400, "ErrorInvalidRequest", "recurrence must be a patternedRecurrence object.")
        pattern, rng = recurrence.get("pattern"), recurrence.get("range")
        if not isinstance(pattern, dict) or not isinstance(rng, dict):
            raise GraphError(400, "ErrorInvalidRequest", "A recurrence needs a pattern and a range.")
        days = {"sunday": rrule.SU, "monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE,
                "thursday": rrule.TH, "friday": rrule.FR, "saturday": rrule.SA}
        index = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
        try:
            interval = int(pattern.get("interval", 1) or 1)
            kind = pattern.get("type")
            start_local = datetime.fromisoformat(master["start"]["dateTime"])
            range_start = date.fromisoformat(rng.get("startDate") or start_local.date().isoformat())
            dtstart = datetime.combine(range_start, start_local.time())
            kwargs: dict[str, Any] = {"interval": interval, "dtstart": dtstart,
                                      "wkst": days[str(pattern.get("firstDayOfWeek") or "sunday").lower()]}
            weekdays = [days[str(d).lower()] for d in pattern.get("daysOfWeek") or []]
            nth = index[str(pattern.get("index") or "first").lower()]
            if kind == "daily":
                freq = rrule.DAILY
            elif kind == "weekly":
                if not weekdays:
                    raise ValueError("weekly recurrence needs daysOfWeek")
                freq, kwargs["byweekday"] = rrule.WEEKLY, weekdays
            elif kind == "absoluteMonthly":
                freq, kwargs["bymonthday"] = rrule.MONTHLY, int(pattern["dayOfMonth"])
            elif kind == "relativeMonthly":
                freq, kwargs["byweekday"] = rrule.MONTHLY, [d(nth) for d in weekdays]
            elif kind == "absoluteYearly":
                freq = rrule.YEARLY
                kwargs["bymonth"], kwargs["bymonthday"] = int(pattern["month"]), int(pattern["dayOfMonth"])
            elif kind == "relativeYearly":
                freq = rrule.YEARLY
                kwargs["bymonth"], kwargs["byweekday"] = int(pattern["month"]), [d(nth) for d in weekdays]
            else:
                raise ValueError(f"unsupported pattern type {kind!r}")
            range_type = rng.get("type")
            if range_type == "endDate":
                kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), datetime.max.time())
            elif range_type == "numbered":
                count = int(rng["numberOfOccurrences"])
                if count < 1:
                    raise ValueError("numberOfOccurrences must be positive")
                kwargs["count"] = count
            elif range_type != "noEnd":
                raise ValueError(f"unsupported range type {range_type!r}")
            if interval < 1:
                raise ValueError("interval must be positive")
            return rrule.rrule(freq, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphError(400, "ErrorInvalidRequest", f"Invalid recurrence: {exc}") from exc

    def _occurrence_times(self, master: dict[str, Any], lo: datetime, hi: datetime) -> list[tuple[str, datetime,
                                                                                                    datetime]]:
        """(key, start UTC, end UTC) of the series' regular occurrences whose original times overlap [lo, hi)."""
        tz = zone(master["start"]["timeZone"])
        start_local = datetime.fromisoformat(master["start"]["dateTime"])
        end_local = datetime.fromisoformat(master["end"]["dateTime"])
        end_tz = zone(master["end"]["timeZone"])
        duration = end_local.replace(tzinfo=end_tz).astimezone(UTC) - start_local.replace(tzinfo=tz).astimezone(UTC)
        if master["isAllDay"]:
            duration = end_local - start_local
        lo_local = lo.astimezone(tz).replace(tzinfo=None) - duration - timedelta(days=1)
        hi_local = hi.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
        found = []
        for occurrence in self._rule(master).between(lo_local, hi_local, inc=True):
            start = occurrence.replace(tzinfo=tz).astimezone(UTC)
            end = ((occurrence + duration).replace(tzinfo=tz).astimezone(UTC) if master["isAllDay"]
                   else start + duration)
            if start < hi and (end > lo or (end == start and start >= lo)):
                found.append((start.strftime("%Y%m%dT%H%M%SZ"), start, end))
        return found

    def _is_occurrence(self, master: dict[str, Any], key: str) -> bool:
        instant = datetime.strptime(key, "%Y%m%dT%H%M%S%z")
        return any(k == key for k, _s, _e in self._occurrence_times(master, instant, instant + timedelta(seconds=1)))

    def _instance(self, master: dict[str, Any], key: str) -> dict[str, Any]:
        """An occurrence or exception of a series, as an internal item."""
        original = datetime.strptime(key, "%Y%m%dT%H%M%S%z")
        times = self._occurrence_times(master, original, original + timedelta(seconds=1))
        base_end = next((e for k, _s, e in times if k == key), None)
        if base_end is None:
            base_end = original + (master["_end"] - master["_start"])
        item = {k: v for k, v in master.items() if k not in ("_exceptions", "_cancelled", "_props")}
        item = copy.deepcopy(item)
        item.update({
            "id": f"{master['id']}_OCC{key}",
            "type": "occurrence",
            "seriesMasterId": master["id"],
            "recurrence": None,
            "originalStart": original.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iCalUId": master["iCalUId"][:-16] + hashlib.sha1(key.encode()).hexdigest()[:16].upper(),
            "_start": original,
            "_end": base_end,
            "_version": master["_seq"],
        })
        override = master["_exceptions"].get(key)
        if override is not None:
            item.update(copy.deepcopy(override))
            item["type"] = "exception"
            item["_version"] = max(master["_seq"], override["_seq"])
        return item

    def _instances(self, box: _Mailbox, calendar: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        """All instances overlapping [lo, hi) in a calendar, sorted by start."""
        found: list[dict[str, Any]] = []
        for item in box.events.values():
            if item["_calendar"] != calendar:
                continue
            if item.get("recurrence") is None:
                if item["_start"] < hi and (item["_end"] > lo or (item["_end"] == item["_start"] >= lo)):
                    found.append({**item, "_version": item["_seq"]})
                continue
            keys = set()
            for key, _start, _end in self._occurrence_times(item, lo, hi):
                if key in item["_cancelled"] or key in item["_exceptions"]:
                    continue
                keys.add(key)
            for key, override in item["_exceptions"].items():
                if override.get("_start", datetime.strptime(key, "%Y%m%dT%H%M%S%z")) < hi:
                    keys.add(key)
            for key in keys:
                instance = self._instance(item, key)
                if instance["_start"] < hi and (instance["_end"] > lo or instance["_end"] == instance["_start"] >= lo):
                    found.append(instance)
        found.sort(key=lambda i: (i["_start"], i["id"]))
        return found
