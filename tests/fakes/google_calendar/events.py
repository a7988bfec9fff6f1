"""Events as stored per calendar, and their writes by the API or by the human editing: insert (client ids, 409
``duplicate``), get/patch/update/delete with ``If-Match``, instances of recurring events (read as copies of the
master until a write stores the exception), validation; each change notifies the calendar's channels."""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from tests.fakes.google_calendar.base import _Calendar
from tests.fakes.google_calendar.common import ApiError, _now_rfc3339
from tests.fakes.google_calendar.recurrence import _occurrence
from tests.fakes.google_calendar.times import _edge, _zone
from tests.fakes.google_calendar.watch import WatchMixin

_CLIENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
# an occurrence of a recurring event: master id (base32hex, so no "_"), then the original start
_INSTANCE_ID_RE = re.compile(r"^(?P<master>[^_]+)_(?P<stamp>\d{8}(?:T\d{6}Z)?)$")
_RECURRENCE_PREFIXES = ("RRULE:", "EXRULE:", "RDATE", "EXDATE")
_ORDER = itertools.count()


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: objects merge recursively, arrays and scalars replace, null clears."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class EventsMixin(WatchMixin):
    """Test hooks that edit events as a human would, and the event writes behind the API."""

    #: fields that clients may not set/alter
    _READ_ONLY = ("kind", "etag", "created", "updated", "htmlLink", "iCalUID", "creator", "organizer")

    # ------------------------------------------------------------------ test hooks: the human editing
    def add_calendar(self, user: str, calendar_id: str) -> None:
        with self._lock:
            self._calendar(user, calendar_id, create=True)

    def add_event(self, user: str, calendar: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return self._insert(cal, copy.deepcopy(body))

    def add_events(self, items: list[tuple[str, str, dict[str, Any]]] | list[list[Any]]) -> list[str]:
        """Bulk seeding: ``[(user, calendar, body), ...]``; one ``exists`` notification per calendar."""
        with self._lock:
            ids: list[str] = []
            touched: dict[tuple[str, str], _Calendar] = {}
            try:
                for user, calendar, body in items:
                    cal = self._calendar(user, calendar, create=True)
                    touched[(cal.owner, cal.calendar_id)] = cal
                    ids.append(self._insert(cal, copy.deepcopy(body), notify=False)["id"])
            finally:  # a bad item stops the seeding; what went in before it is still announced
                for cal in touched.values():
                    self._notify_change(cal)
            return ids

    def edit_event(self, user: str, calendar: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return self._patch(cal, event_id, copy.deepcopy(changes), if_match=None, replace=False)

    def delete_event(self, user: str, calendar: str, event_id: str) -> None:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            self._delete(cal, event_id, if_match=None)

    def events(self, user: str, calendar: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A snapshot of the stored events (public fields only)."""
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return [
                self._public(e)
                for e in cal.events.values()
                if include_deleted or e["status"] != "cancelled"
            ]

    # ------------------------------------------------------------------ writes
    @staticmethod
    def _validate(event: dict[str, Any]) -> None:
        for edge in ("start", "end"):
            point = event.get(edge)
            if not isinstance(point, dict) or not ({"date", "dateTime"} & point.keys()):
                raise ApiError(400, "required", f"Missing {edge} time.")
            try:
                _edge(point)
            except ValueError as exc:
                raise ApiError(400, "invalid", f"Invalid {edge} time.") from exc
            try:
                _zone(point)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ApiError(400, "invalid", f"Invalid time zone definition for {edge} time.") from exc
        start, end = _edge(event["start"]), _edge(event["end"])
        if start and end and end < start:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.",
                           locationType="parameter", location="end.dateTime")
        if event.get("eventType") == "outOfOffice":
            if "date" in event["start"] or "date" in event["end"]:
                raise ApiError(400, "invalid", "An out of office event cannot be an all-day event.")
        if event.get("status", "confirmed") not in ("confirmed", "tentative", "cancelled"):
            raise ApiError(400, "invalid", "Invalid value for: status")
        recurrence = event.get("recurrence")
        if recurrence is not None:
            if "recurringEventId" in event:
                raise ApiError(400, "invalid", "An instance of a recurring event cannot have a recurrence.")
            if not isinstance(recurrence, list) or not all(
                isinstance(line, str) and line.upper().startswith(_RECURRENCE_PREFIXES) for line in recurrence
            ):
                raise ApiError(400, "invalid", "Invalid recurrence rule.")
            # EventDateTime.timeZone: "For recurring events this field is required"
            for edge in ("start", "end"):
                if "dateTime" in event[edge] and not event[edge].get("timeZone"):
                    raise ApiError(400, "required", f"Missing time zone definition for {edge} time.")

    def _insert(self, cal: _Calendar, body: dict[str, Any], *, notify: bool = True) -> dict[str, Any]:
        event_id = body.get("id")
        if event_id is None:
            event_id = uuid.uuid4().hex  # hex digits are a subset of base32hex
        elif not isinstance(event_id, str) or not _CLIENT_ID_RE.match(event_id):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in cal.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        # "only one of [iCalUID and id] should be supplied at event creation time": a given iCalUID is kept
        ical_uid = body.get("iCalUID")
        for key in self._READ_ONLY:
            body.pop(key, None)
        for key in ("recurringEventId", "originalStartTime"):
            body.pop(key, None)
        body.setdefault("eventType", "default")
        body.setdefault("status", "confirmed")
        if body["eventType"] == "outOfOffice":
            body.setdefault("transparency", "opaque")
            body.setdefault("outOfOfficeProperties", {})
        self._validate(body)
        event = {
            "kind": "calendar#event",
            "id": event_id,
            "iCalUID": ical_uid if isinstance(ical_uid, str) and ical_uid else f"{event_id}@google.com",
            "created": _now_rfc3339(),
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "creator": {"email": cal.owner, "self": True},
            "organizer": {"email": cal.calendar_id, "self": True},
            "sequence": 0,
            **body,
        }
        event["id"] = event_id
        event["_order"] = next(_ORDER)
        self._bump(event)
        cal.events[event_id] = event
        if notify:
            self._notify_change(cal)
        return self._public(event)

    def _find(self, cal: _Calendar, event_id: str) -> dict[str, Any] | None:
        """A stored event, or the unstored instance of a recurring master that ``event_id`` names."""
        event = cal.events.get(event_id)
        if event is not None:
            return event
        match = _INSTANCE_ID_RE.match(event_id)
        master = cal.events.get(match["master"]) if match else None
        if match is None or master is None or not master.get("recurrence"):
            return None
        occurrence = _occurrence(master, match["stamp"])
        if occurrence is None:
            return None
        instance = copy.deepcopy(master)  # same etag, iCalUID, sequence and status as the master
        del instance["recurrence"]
        instance["id"] = event_id
        instance["htmlLink"] = f"https://www.google.com/calendar/event?eid={event_id}"
        instance["recurringEventId"] = master["id"]
        instance["start"], instance["end"] = occurrence
        instance["originalStartTime"] = copy.deepcopy(occurrence[0])
        instance["_order"] = None  # not stored yet
        return instance

    def _live(self, cal: _Calendar, event_id: str, if_match: str | None) -> dict[str, Any]:
        event = self._find(cal, event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        if event["status"] == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        if if_match is not None and if_match != "*" and if_match.removeprefix("W/") != event["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed",
                           locationType="header", location="If-Match")
        return event

    def _store(self, cal: _Calendar, event: dict[str, Any]) -> None:
        if event.get("_order") is None:  # an instance becoming an exception
            event["_order"] = next(_ORDER)
        self._bump(event)
        cal.events[event["id"]] = event
        self._notify_change(cal)

    def _patch(self, cal: _Calendar, event_id: str, body: dict[str, Any], *, if_match: str | None,
               replace: bool) -> dict[str, Any]:
        event = self._live(cal, event_id, if_match)
        if "id" in body and body["id"] != event_id:
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if "eventType" in body and body["eventType"] != event["eventType"]:
            raise ApiError(400, "eventTypeRestriction", "The event type cannot be changed.")
        for key in (*self._READ_ONLY, "recurringEventId", "originalStartTime"):
            body.pop(key, None)
        candidate = copy.deepcopy(event)
        if replace:
            kept = (*self._READ_ONLY, "id", "eventType", "_order", "_seq", "sequence", "recurringEventId",
                    "originalStartTime")
            keep = {k: candidate[k] for k in kept if k in candidate}
            candidate = {**keep, "status": "confirmed", **{k: v for k, v in body.items() if v is not None}}
        else:
            _merge(candidate, body)
        self._validate(candidate)
        candidate["sequence"] = int(candidate.get("sequence", 0)) + 1
        self._store(cal, candidate)
        return self._public(candidate)

    def _delete(self, cal: _Calendar, event_id: str, *, if_match: str | None) -> None:
        event = self._live(cal, event_id, if_match)
        event["status"] = "cancelled"
        self._store(cal, event)
